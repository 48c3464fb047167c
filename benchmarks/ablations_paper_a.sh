#!/usr/bin/env bash
# Paper A's ablations (RQ3: the reward; RQ4: the action) and the feature-subset ablation, as
# PPO controllers on fashion_mlp (RESULTS.md's training task), then one held-out evaluation.
#
#   bash benchmarks/ablations_paper_a.sh            # train (resumable), then evaluate
#   STAGE=train bash benchmarks/ablations_paper_a.sh  # only the trainings
#
# Every controller differs from the reference (the shipped defaults) in ONE option and trains
# with the same budget (UPDATES x 16 episodes) from the same seed. The evaluation reuses the
# baselines as tuned in results/fashion_mlp (tuning seeds from root 1000) and runs every method
# on 10 held-out episodes from root seed 2000, which neither training (root 0) nor tuning saw.
# A finished training is not redone (lrjax train resumes a complete run).
set -euo pipefail
cd "$(dirname "$0")/.."
LRJAX=${LRJAX:-.venv/bin/lrjax}
UPDATES=${UPDATES:-50}
RUNS=${RUNS:-runs/ablations_paper_a}
OUT=${OUT:-results/ablations_paper_a}
STAGE=${STAGE:-all}

train() {  # NAME [options that differ from the reference]
  local name=$1
  shift
  "$LRJAX" train --task fashion_mlp --updates "$UPDATES" --updates-per-chunk 5 \
    --eval-episodes 0 --seed 0 --out "$RUNS/$name" "$@"
}

train reference
train reward_val_loss --reward val_loss      # paper A's per-step validation-loss reward
train reward_final --reward final            # final-only reward
train absolute_lr --action-mode absolute     # the action is the LR (paper B), not a scale
train loss_only_state --features train_loss  # paper B's loss-only state, not paper A's
[ "$STAGE" = train ] && exit 0

"$LRJAX" evaluate --task fashion_mlp \
  --controller "reference=$RUNS/reference/controller" \
  --controller "reward_val_loss=$RUNS/reward_val_loss/controller" \
  --controller "reward_final=$RUNS/reward_final/controller" \
  --controller "absolute_lr=$RUNS/absolute_lr/controller" \
  --controller "loss_only_state=$RUNS/loss_only_state/controller" \
  --baselines constant,step_decay,cosine_warmup \
  --tuning results/fashion_mlp/tuning.json --tune-seeds 0 \
  --seeds 10 --seed 2000 --train-seed 0 --out "$OUT"
