#!/usr/bin/env bash
# Issue 27, meta mode: the stabilised actor with the independent reward acting every k steps
# (--steps-per-action k; an episode of 400 steps is 400 / k actions; gamma per action), against
# the constant LR tuned on separate seeds, on the 10 held-out seeds of actor_critic_meta.sh.
# Each training is 1.5-5 minutes on 2 cores; a finished run is not trained again.
#
#   RUNS=runs/actor_critic_meta_mnist bash benchmarks/actor_critic_meta_actions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LRJAX=${LRJAX:-.venv/bin/lrjax}
RUNS=${RUNS:-runs/actor_critic_meta}
OUT=${OUT:-runs/actor_critic_meta_actions_eval}
EPISODE=400
TD3=(--action-mode log --target-update 0.05 --twin-critics --policy-delay 2 --critic-warmup 100
  --reward-minibatch independent)

run() {  # NAME K UPDATES [options]: train (resumable), then evaluate on the held-out seeds
  local name=$1 k=$2 updates=$3
  shift 3
  "$LRJAX" train --algo actor-critic --task mnist_mlp --mode meta --reset-every "$EPISODE" \
    --updates "$updates" --seed 0 --eval-episodes 0 --out "$RUNS/$name" "${TD3[@]}" \
    --steps-per-action "$k" "$@"
  "$LRJAX" evaluate --task mnist_mlp --horizon $((EPISODE / k)) \
    --controller "$name=$RUNS/$name/controller" --baselines constant --tune-seeds 4 --seeds 10 \
    --seed 2000 --test-every $((100 / k > 0 ? 100 / k : 1)) --out "$OUT/$name"
}

run k10_g09_indep 10 200 --gamma 0.9
run k40_g09_indep 40 200 --gamma 0.9
run k10_g09_indep_u600 10 600 --gamma 0.9
run k10_g097_indep 10 200 --gamma 0.97
run k20_g09_indep 20 200 --gamma 0.9
