#!/usr/bin/env bash
# Issue 27's meta mode as a product: actor-critic controllers trained over reset episodes on
# mnist_mlp (MNIST, paper B's minibatch of 50, an MLP of 64), paper B's Algorithm 1 and the
# stabilisers (log-space actions, target networks, clipped double Q, delayed actor updates, a
# critic warm-up), at gamma 0.9 and 0.5; then one held-out evaluation of all of them against
# SGD at a constant LR and step decay tuned on separate seeds (lrjax evaluate).
#
#   bash benchmarks/actor_critic_meta.sh          # train (resumable), then evaluate
#   STAGE=train bash benchmarks/actor_critic_meta.sh
set -euo pipefail
cd "$(dirname "$0")/.."
LRJAX=${LRJAX:-.venv/bin/lrjax}
UPDATES=${UPDATES:-200}
EPISODE=${EPISODE:-400}
RUNS=${RUNS:-runs/actor_critic_meta}
OUT=${OUT:-results/actor_critic_meta}
STAGE=${STAGE:-all}
TD3=(--action-mode log --target-update 0.05 --twin-critics --policy-delay 2 --critic-warmup 100)

train() {  # NAME [options that differ from paper B's]
  local name=$1
  shift
  "$LRJAX" train --algo actor-critic --task mnist_mlp --mode meta --reset-every "$EPISODE" \
    --updates "$UPDATES" --seed 0 --eval-episodes 0 --out "$RUNS/$name" "$@"
}

train paper_b
train paper_b_gamma05 --gamma 0.5
train td3 "${TD3[@]}"
train td3_gamma05 "${TD3[@]}" --gamma 0.5
train td3_gamma05_next "${TD3[@]}" --gamma 0.5 --actor-minibatch next
[ "$STAGE" = train ] && exit 0

controllers=()
for name in paper_b paper_b_gamma05 td3 td3_gamma05 td3_gamma05_next; do
  controllers+=(--controller "$name=$RUNS/$name/controller")
done
"$LRJAX" evaluate --task mnist_mlp --horizon "$EPISODE" "${controllers[@]}" \
  --baselines constant,step_decay --tune-seeds 4 --seeds 10 --seed 2000 --test-every 100 \
  --out "$OUT"
