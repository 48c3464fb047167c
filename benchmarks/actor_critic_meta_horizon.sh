#!/usr/bin/env bash
# Issue 27, meta mode with the independent reward (--reward-minibatch independent): does a longer
# horizon, a larger reward, more exploration or a progress feature bring the stabilised actor's
# LR up to the tuned constant's? Each training is about 70 s on 2 cores (compile cached); two
# held-out evaluations as in actor_critic_meta.sh (the same 10 seeds, so the constant row is the
# same). td3_gamma05_indep is the run of RESULTS.md's previous paragraph (its command there).
#
#   RUNS=runs/actor_critic_meta_mnist bash benchmarks/actor_critic_meta_horizon.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LRJAX=${LRJAX:-.venv/bin/lrjax}
RUNS=${RUNS:-runs/actor_critic_meta}
OUT=${OUT:-runs/actor_critic_meta_horizon_eval}
TD3=(--action-mode log --target-update 0.05 --twin-critics --policy-delay 2 --critic-warmup 100
  --reward-minibatch independent)

train() {  # NAME [options beyond the stabilised actor with the independent reward]
  local name=$1
  shift
  "$LRJAX" train --algo actor-critic --task mnist_mlp --mode meta --reset-every 400 \
    --updates 200 --seed 0 --eval-episodes 0 --out "$RUNS/$name" "${TD3[@]}" "$@"
}

evaluate() {  # OUT NAME...
  local out=$1
  shift
  local controllers=()
  for name in "$@"; do controllers+=(--controller "$name=$RUNS/$name/controller"); done
  "$LRJAX" evaluate --task mnist_mlp --horizon 400 "${controllers[@]}" --baselines constant \
    --tune-seeds 4 --seeds 10 --seed 2000 --test-every 100 --out "$out"
}

train td3_gamma09_indep --gamma 0.9
train td3_gamma099_indep --gamma 0.99
evaluate "$OUT/gamma" td3_gamma09_indep td3_gamma099_indep td3_gamma05_indep
train g09_indep_rs100 --gamma 0.9 --reward-scale 100
train g09_indep_expl1 --gamma 0.9 --exploration-std 1.0
train g09_indep_prog --gamma 0.9 --features train_loss,progress,log_lr
train g05_indep_prog --gamma 0.5 --features train_loss,progress,log_lr
evaluate "$OUT/sweep" g09_indep_rs100 g09_indep_expl1 g09_indep_prog g05_indep_prog
