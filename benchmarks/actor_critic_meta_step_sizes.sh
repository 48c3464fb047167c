#!/usr/bin/env bash
# Issue 27, meta mode: the best actor-critic of actor_critic_meta_actions.sh (the stabilised
# actor, the independent reward, an action every 10 steps, gamma 0.9) with a larger actor step
# size (alpha_theta; default 1e-3) or a start nearer the tuned constant (--initial-lr; default
# 0.01, paper B's), each against the constant LR tuned on separate seeds, on the same 10
# held-out seeds.
# Each training is 1.5-5 minutes on 2 cores; a finished run is not trained again.
#
#   RUNS=runs/actor_critic_meta_mnist bash benchmarks/actor_critic_meta_step_sizes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LRJAX=${LRJAX:-.venv/bin/lrjax}
RUNS=${RUNS:-runs/actor_critic_meta}
OUT=${OUT:-runs/actor_critic_meta_step_sizes_eval}
EPISODE=400
K=10
BASE=(--action-mode log --target-update 0.05 --policy-delay 2 --critic-warmup 100
  --reward-minibatch independent --steps-per-action "$K" --gamma 0.9)
TD3=("${BASE[@]}" --twin-critics)

run() {  # NAME UPDATES [options]: train (resumable), then evaluate on the held-out seeds
  local name=$1 updates=$2
  shift 2
  "$LRJAX" train --algo actor-critic --task mnist_mlp --mode meta --reset-every "$EPISODE" \
    --updates "$updates" --seed 0 --eval-episodes 0 --out "$RUNS/$name" "$@"
  "$LRJAX" evaluate --task mnist_mlp --horizon $((EPISODE / K)) \
    --controller "$name=$RUNS/$name/controller" --baselines constant --tune-seeds 4 --seeds 10 \
    --seed 2000 --test-every $((100 / K)) --out "$OUT/$name"
}

run k10_alr3e-3 200 "${TD3[@]}" --actor-learning-rate 3e-3
run k10_alr1e-2 200 "${TD3[@]}" --actor-learning-rate 1e-2
run k10_init03 200 "${TD3[@]}" --initial-lr 0.3
# one critic instead of the smaller of two (clipped double Q is pessimistic where returns are
# noisy, which a high LR makes them)
run k10_single_q 200 "${BASE[@]}"
run k10_single_q_init03 200 "${BASE[@]}" --initial-lr 0.3
# started at the constant LR tuned on other seeds: does it improve on it?
run k10_single_q_init0533 200 "${BASE[@]}" --initial-lr 0.533
