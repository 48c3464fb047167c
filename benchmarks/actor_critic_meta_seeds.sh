#!/usr/bin/env bash
# Issue 27, meta mode: the spread over training seeds of the meta-mode actor-critics whose single
# runs came nearest the tuned constant LR (RESULTS.md, "Meta mode on mnist_mlp"): the stabilised
# actor with the independent reward, an action every 10 steps, gamma 0.9, with twin critics from
# paper B's start (0.01), with one critic from 0.01, and with one critic from the constant tuned on
# other seeds (0.533). Each setting is trained from root seeds 0-3 (actor, critic, trainee
# episodes), then every run and the constant LR (tuned here on 4 seeds) are evaluated together on
# the same 10 held-out episodes, paired against the constant.
# Each training is 1.5-3.5 minutes on 2 cores; a finished run is not trained again.
#
#   RUNS=runs/actor_critic_meta_seeds bash benchmarks/actor_critic_meta_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LRJAX=${LRJAX:-.venv/bin/lrjax}
RUNS=${RUNS:-runs/actor_critic_meta_seeds}
OUT=${OUT:-$RUNS/eval}
SEEDS=${SEEDS:-"0 1 2 3"}
EPISODE=400
K=10
BASE=(--action-mode log --target-update 0.05 --policy-delay 2 --critic-warmup 100
  --reward-minibatch independent --steps-per-action "$K" --gamma 0.9)

train() {  # NAME SEED [options]: train (resumable) one setting from one root seed
  local name=$1 seed=$2
  shift 2
  "$LRJAX" train --algo actor-critic --task mnist_mlp --mode meta --reset-every "$EPISODE" \
    --updates 200 --seed "$seed" --eval-episodes 0 --out "$RUNS/${name}_s$seed" "$@"
}

controllers=()
for seed in $SEEDS; do
  train twin "$seed" "${BASE[@]}" --twin-critics
  train single "$seed" "${BASE[@]}"
  train single_init0533 "$seed" "${BASE[@]}" --initial-lr 0.533
  for name in twin single single_init0533; do
    controllers+=(--controller "${name}_s$seed=$RUNS/${name}_s$seed/controller")
  done
done
"$LRJAX" evaluate --task mnist_mlp --horizon $((EPISODE / K)) "${controllers[@]}" \
  --baselines constant --reference constant --tune-seeds 4 --seeds 10 --seed 2000 \
  --test-every $((100 / K)) --out "$OUT"
