#!/usr/bin/env bash
# Issue 27, meta mode: the actor-critic with paper A's action, which scales the previous LR by a
# factor in [1/alpha, alpha] every 10 steps (so an action moves the LR of every later step, not of
# its own 10 only), observing its own log-LR and the run's progress besides the minibatch loss;
# the stabilised learner with the independent reward of actor_critic_meta_actions.sh otherwise.
# Every run and the constant LR (tuned on 4 seeds) on the same 10 held-out episodes, paired
# against the constant.
# Each training is 2-4 minutes on 2 cores; a finished run is not trained again.
#
#   RUNS=runs/actor_critic_meta_scale bash benchmarks/actor_critic_meta_scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LRJAX=${LRJAX:-.venv/bin/lrjax}
RUNS=${RUNS:-runs/actor_critic_meta_scale}
OUT=${OUT:-$RUNS/eval}
EPISODE=400
K=10
SCALE=(--action-mode scale --alpha 1.25 --initial-lr 0.1 --features train_loss,log_lr,progress
  --target-update 0.05 --policy-delay 2 --critic-warmup 100 --reward-minibatch independent
  --steps-per-action "$K")

train() {  # NAME [options]: train (resumable) from root seed 0
  local name=$1
  shift
  "$LRJAX" train --algo actor-critic --task mnist_mlp --mode meta --reset-every "$EPISODE" \
    --updates 200 --seed 0 --eval-episodes 0 --out "$RUNS/$name" "$@"
}

train scale_twin_g09 "${SCALE[@]}" --twin-critics --gamma 0.9
train scale_single_g09 "${SCALE[@]}" --gamma 0.9
train scale_twin_g097 "${SCALE[@]}" --twin-critics --gamma 0.97
controllers=()
for name in scale_twin_g09 scale_single_g09 scale_twin_g097; do
  controllers+=(--controller "$name=$RUNS/$name/controller")
done
"$LRJAX" evaluate --task mnist_mlp --horizon $((EPISODE / K)) "${controllers[@]}" \
  --baselines constant --reference constant --tune-seeds 4 --seeds 10 --seed 2000 \
  --test-every $((100 / K)) --out "$OUT"
