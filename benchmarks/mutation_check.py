"""Mutation check: do the tests catch the bugs that matter?

Each mutation is one small deliberate bug (a sign, a mask, a forgotten update) in one file. The
script copies the project's files (tracked, and new ones git does not ignore) to a temporary
folder once, and for each mutation writes the bug into the copy, runs the tests that should
catch it there (the copy's own ``lrjax``), restores the file, and prints caught (the tests
failed) or MISSED (they passed). First it runs every listed test on the unmutated copy: they
must pass, or no result means anything.

    .venv/bin/python benchmarks/mutation_check.py                 # all (~21 min on 2 idle cores)
    .venv/bin/python benchmarks/mutation_check.py --only gae-reset-flags,critic-never-trained
    .venv/bin/python benchmarks/mutation_check.py --list

Written by hand: mutation tools (mutmut, cosmic-ray) mutate every operator they find and take
hours on a JAX project whose tests compile; this list names the bugs issue 15 found slipping
through, one per important public module, and issue 28's: each guarantee of the evaluation
protocol and each PPO setting broken, and bugs in the generalization wave's code (task families,
the loss history, FamilyPPO, the evaluation package). Mutations may name single tests
(``file::test_name``) to keep their runs short. New test files are copied even before they are
committed (``--list`` also says when a mutation's text no longer occurs exactly once).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
    """``old`` (exactly once in ``path``) replaced by ``new``; ``tests`` should catch it."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


PROTOCOL = "tests/test_protocol_guarantees.py::test_"
SETTINGS = "tests/test_ppo_settings.py::test_"
FAMILY_TESTS = ("tests/test_tasks_family.py",)
HISTORY_TESTS = ("tests/test_features_history.py",)
FAMILY_PPO_ENVS = ("tests/test_algos_family.py::test_each_sample_is_its_own_environment",)

MUTATIONS = (
    # -- caught when issue 15 was filed (keep them caught) --------------------------------------
    Mutation(
        "gae-done-mask-off-by-one",
        "lrjax/algos/ppo_math.py",
        "not_done = 1.0 - dones.astype(dtype)",
        "not_done = 1.0 - jnp.roll(dones, 1, axis=0).astype(dtype)",
        ("tests/test_algos_ppo_math.py::test_gae_by_hand_with_episode_end",),
    ),
    Mutation(
        "clip-max-not-min",
        "lrjax/algos/ppo_math.py",
        "loss = -jnp.mean(jnp.minimum(unclipped, clipped))",
        "loss = -jnp.mean(jnp.maximum(unclipped, clipped))",
        ("tests/test_algos_ppo_math.py::test_clipped_surrogate_by_hand",),
    ),
    Mutation(
        "scale-action-sign",
        "lrjax/controller/actor.py",
        "lr = prev * jnp.exp(log_alpha * jnp.tanh(u))",
        "lr = prev * jnp.exp(-log_alpha * jnp.tanh(u))",
        ("tests/test_controller_actor.py::test_action_to_lr_formulas",),
    ),
    Mutation(
        "skipped-step-still-acts",
        "lrjax/controller/transform.py",
        "acts = finite & acts_now",
        "acts = acts_now",
        ("tests/test_controller_transform.py::test_non_finite_loss_or_gradient_skips_the_step",),
    ),
    Mutation(
        "skipped-step-counted",
        "lrjax/controller/transform.py",
        "count=jnp.where(finite, optax.safe_increment(state.count), state.count),",
        "count=optax.safe_increment(state.count),",
        ("tests/test_controller_transform.py::test_non_finite_loss_or_gradient_skips_the_step",),
    ),
    Mutation(
        "reward-not-negated",
        "lrjax/mdp.py",
        "return -loss / initial_loss\n",
        "return loss / initial_loss\n",
        ("tests/test_env.py::test_rewards[val_loss]",),
    ),
    Mutation(
        "divergence-penalty-off-by-one",
        "lrjax/mdp.py",
        "return -factor * (horizon - t + 1).astype(jnp.float32)",
        "return -factor * (horizon - t).astype(jnp.float32)",
        ("tests/test_env.py::test_divergence_ends_only_that_episode_with_a_penalty",),
    ),
    # -- missed when issue 15 was filed ---------------------------------------------------------
    Mutation(
        "gae-reset-flags",
        "lrjax/algos/ppo.py",
        "traj.reward, traj.value, traj.done, last_value, cfg.gamma, cfg.gae_lambda",
        "traj.reward, traj.value, traj.reset, last_value, cfg.gamma, cfg.gae_lambda",
        ("tests/test_algos_ppo_wiring.py::test_gae_is_computed_with_the_done_flags",),
    ),
    Mutation(
        "rollout-carry-not-reset",
        "lrjax/algos/ppo.py",
        "carry = reset_carry(runner.carry, runner.done, ccfg)",
        "carry = runner.carry",
        (
            "tests/test_algos_ppo_wiring.py::test_the_loss_replay_gives_the_rollout_log_probs_across_an_episode_start",
        ),
    ),
    Mutation(
        "replay-carry-not-reset",
        "lrjax/algos/ppo.py",
        "carry = reset_carry(carry, r, ccfg)",
        "carry = carry",
        (
            "tests/test_algos_ppo_wiring.py::test_the_loss_replay_gives_the_rollout_log_probs_across_an_episode_start",
        ),
    ),
    Mutation(
        "critic-never-trained",
        "lrjax/algos/ppo.py",
        "total = policy_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy",
        "total = policy_loss + 0.0 * v_loss - cfg.ent_coef * entropy",
        ("tests/test_algos_ppo_wiring.py::test_the_critic_learns_the_returns_of_a_fixed_rollout",),
    ),
    Mutation(
        "entropy-sign",
        "lrjax/algos/ppo.py",
        "total = policy_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy",
        "total = policy_loss + cfg.vf_coef * v_loss + cfg.ent_coef * entropy",
        ("tests/test_algos_ppo_wiring.py::test_an_entropy_bonus_raises_the_policy_entropy",),
    ),
    Mutation(
        "pred-change-var-of-p",
        "lrjax/features/builtin.py",
        "jnp.var(preds - prev)",
        "jnp.var(preds)",
        ("tests/test_features.py::test_pred_change_var_is_the_variance_of_the_change",),
    ),
    Mutation(
        "prev-predictions-never-updated",
        "lrjax/controller/transform.py",
        "prev_predictions=keep(predictions, state.prev_predictions),",
        "prev_predictions=state.prev_predictions,",
        (
            "tests/test_features.py::test_the_transform_observes_the_change_since_its_previous_observation",
        ),
    ),
    Mutation(
        "cosine-times-zero",
        "lrjax/baselines/schedules.py",
        "cosine = 0.5 * peak_value * (1 + jnp.cos(jnp.pi * progress))",
        "cosine = 0.0 * peak_value * (1 + jnp.cos(jnp.pi * progress))",
        (
            "tests/test_baselines_behaviour.py::test_cosine_follows_warm_up_then_half_cosine_to_zero",
        ),
    ),
    Mutation(
        "prodigy-then-scale-0",
        "lrjax/baselines/registry.py",
        'lambda hp, s: optax.contrib.prodigy(hp["learning_rate"]),',
        'lambda hp, s: optax.chain(optax.contrib.prodigy(hp["learning_rate"]), optax.scale(0.0)),',
        (
            "tests/test_baselines_behaviour.py::test_each_baseline_trains_the_noisy_quadratic_to_near_its_noise_floor[prodigy]",
        ),
    ),
    Mutation(
        "schedule-free-adamw-ascends",
        "lrjax/baselines/registry.py",
        'optax.contrib.schedule_free_adamw(hp["learning_rate"])',
        'optax.contrib.schedule_free_adamw(-hp["learning_rate"])',
        (
            "tests/test_baselines_behaviour.py::test_each_baseline_trains_the_noisy_quadratic_to_near_its_noise_floor[schedule_free_adamw]",
        ),
    ),
    # -- one per important public module --------------------------------------------------------
    Mutation(
        "td-error-ignores-gamma",
        "lrjax/algos/actor_critic_math.py",
        "return reward + gamma * jnp.where(terminal, 0.0, q_next)",
        "return reward + jnp.where(terminal, 0.0, q_next)",
        (
            "tests/test_algos_actor_critic.py::test_td_error_and_critic_gradient_match_a_hand_computation",
        ),
    ),
    Mutation(
        "normaliser-mean-not-count-weighted",
        "lrjax/features/normaliser.py",
        "mean = state.mean + delta * mb / nf",
        "mean = state.mean + delta * 0.5",
        (
            "tests/test_features.py::test_accumulate_is_the_exact_mean_and_variance_of_all_finite_observations",
        ),
    ),
    Mutation(
        "skip-nonfinite-keeps-new-state",
        "lrjax/controller/nonfinite.py",
        "keep = lambda new, old: jnp.where(finite, new, old)",
        "keep = lambda new, old: new",
        (
            "tests/test_controller_nonfinite.py::test_a_nan_minibatch_is_skipped_by_the_whole_chain[momentum]",
        ),
    ),
    Mutation(
        "sgd-hd-hypergradient-sign",
        "lrjax/baselines/hypergradient.py",
        "hypergrad = -_tree_dot(updates, state.prev_grads)",
        "hypergrad = _tree_dot(updates, state.prev_grads)",
        ("tests/test_baselines_hypergradient.py::test_sgd_hd_three_steps_by_hand",),
    ),
    Mutation(
        "select-best-picks-worst",
        "lrjax/baselines/registry.py",
        "return int(np.argmin(scores))",
        "return int(np.argmax(scores))",
        (
            "tests/test_baselines_registry.py::test_select_best_takes_the_lowest_mean_and_counts_nonfinite_as_worst",
        ),
    ),
    Mutation(
        "resume-keeps-rows-after-checkpoint",
        "lrjax/algos/runner.py",
        "path.read_text().splitlines()[:limit]",
        "path.read_text().splitlines()",
        ("tests/test_algos_runner.py::test_resume_drops_metrics_of_updates_after_the_checkpoint",),
    ),
    Mutation(
        "minibatches-always-the-first-examples",
        "lrjax/data/arrays.py",
        "return jax.random.randint(key, (batch_size,), 0, split_size)",
        "return jnp.arange(batch_size) % split_size",
        ("tests/test_data.py::test_minibatch_sampling_inside_jit",),
    ),
    Mutation(
        "paired-difference-reversed",
        "lrjax/evaluation/stats.py",
        "d = np.asarray(a, np.float64) - np.asarray(b, np.float64)",
        "d = np.asarray(b, np.float64) - np.asarray(a, np.float64)",
        (
            "tests/test_evaluation_stats.py::test_paired_difference_is_the_interval_of_the_per_seed_differences",
        ),
    ),
    Mutation(
        "faults-never-injected",
        "lrjax/testing/faults.py",
        "hit = jax.random.uniform(k_hit) < self.rate",
        "hit = jax.random.uniform(k_hit) < 0.0",
        ("tests/test_faults.py::test_faults_hit_the_rate_and_each_kind_does_what_it_says",),
    ),
    Mutation(
        "env-ignores-nonfinite-train-loss",
        "lrjax/mdp.py",
        "        | ~jnp.isfinite(trained_on)\n",
        "\n",
        (
            "tests/test_faults.py::test_each_kind_of_fault_ends_the_episode_at_once_with_the_penalty[inf_loss]",
        ),
    ),
    # -- issue 28: the protocol's guarantees and the settings results rest on -------------------
    Mutation(
        "tuning-reads-the-test-split",
        "lrjax/evaluation/protocol.py",
        "results[lr] = _mean_or_inf(e.validation_loss)",
        "results[lr] = _mean_or_inf(e.test_loss)",
        (PROTOCOL + "tuning_reads_only_the_validation_split",),
    ),
    Mutation(
        "held-out-episodes-are-the-tuning-episodes",
        "lrjax/evaluation/batch.py",
        "env, controllers, tuned, jax.random.fold_in(key, 1), task_data, seeds,",
        "env, controllers, tuned, jax.random.fold_in(key, 0), task_data, seeds,",
        (PROTOCOL + "tuning_held_out_and_training_episodes_are_disjoint",),
    ),
    Mutation(
        "image-init-ignores-the-seed-key",
        "lrjax/tasks/image.py",
        'params = self.model.init(key, x)["params"]',
        'params = self.model.init(jax.random.key(0), x)["params"]',
        (PROTOCOL + "each_seed_starts_every_task_from_its_own_weights_and_minibatches",),
    ),
    Mutation(
        "trainee-init-ignores-the-seed-key",
        "lrjax/training.py",
        "params = task.init(init_key, data)",
        "params = task.init(jax.random.key(0), data)",
        (PROTOCOL + "each_seed_starts_every_family_variant_from_its_own_weights_and_minibatches",),
    ),
    Mutation(
        "minibatch-order-ignores-the-seed-key",
        "lrjax/training.py",
        "return TraineeState(params, tx.init(params), run_key, jnp.zeros((), jnp.int32))",
        "return TraineeState(params, tx.init(params), jax.random.key(0), jnp.zeros((), jnp.int32))",
        (PROTOCOL + "each_seed_starts_every_task_from_its_own_weights_and_minibatches",),
    ),
    Mutation(
        "evaluation-samples-the-actions",
        "lrjax/evaluation/episodes.py",
        "carry, mean, _ = actor_step(actor_params, carry, obs, config)",
        "carry, mean, _ = actor_step(actor_params, carry, obs, config); "
        "mean = mean + jnp.exp(_) * jax.random.normal(k, jnp.shape(mean))",
        (PROTOCOL + "evaluation_applies_the_controllers_mean_action",),
    ),
    Mutation(
        "adam-baseline-runs-sgd",
        "lrjax/evaluation/protocol.py",
        "if optimizer == env.config.optimizer:",
        "if True:",
        (PROTOCOL + "each_baseline_runs_its_own_optimizer_on_the_held_out_episodes",),
    ),
    Mutation(
        "advantages-not-standardised",
        "lrjax/algos/ppo.py",
        "adv = ppo_math.normalize_advantages(advantages)",
        "adv = advantages",
        (SETTINGS + "the_loss_standardises_the_advantages",),
    ),
    Mutation(
        "gradient-clipping-removed",
        "lrjax/algos/ppo.py",
        "optax.clip_by_global_norm(self.config.max_grad_norm),",
        "optax.identity(),",
        (SETTINGS + "a_huge_gradient_is_clipped_to_max_grad_norm",),
    ),
    Mutation(
        "critic-time-input-dropped",
        "lrjax/algos/ppo.py",
        "x = jnp.concatenate([obs, progress[..., None].astype(obs.dtype)], axis=-1)",
        "x = jnp.concatenate([obs, 0.0 * progress[..., None].astype(obs.dtype)], axis=-1)",
        (SETTINGS + "the_critic_sees_the_time_left_in_the_episode",),
    ),
    Mutation(
        "critic-time-input-frozen-at-the-start",
        "lrjax/algos/ppo.py",
        "return env_state.t.astype(jnp.float32) / self.env.config.horizon",
        "return 0.0 * env_state.t.astype(jnp.float32) / self.env.config.horizon",
        (SETTINGS + "the_critic_sees_the_time_left_in_the_episode",),
    ),
    Mutation(
        "family-draw-ignores-the-key",
        "lrjax/tasks/family.py",
        "index = np.asarray(jax.random.randint(key, (len(_IMAGE_AXES),), 0, sizes))",
        "index = np.asarray(jax.random.randint(jax.random.key(0), (len(_IMAGE_AXES),), 0, sizes))",
        (SETTINGS + "a_familys_draws_cover_every_value_of_every_axis_about_uniformly",),
    ),
    Mutation(
        "family-draw-never-takes-an-axis-last-value",
        "lrjax/tasks/family.py",
        "index = np.asarray(jax.random.randint(key, (len(_IMAGE_AXES),), 0, sizes))",
        "index = np.asarray(jax.random.randint(key, (len(_IMAGE_AXES),), 0, "
        "jnp.maximum(sizes - 1, 1)))",
        (SETTINGS + "a_familys_draws_cover_every_value_of_every_axis_about_uniformly",),
    ),
    # -- issue 28: the code of the generalization wave -------------------------------------------
    Mutation(
        "family-samples-drop-optimizers",
        "lrjax/tasks/family.py",
        "itertools.product(tasks, self.budgets, self.optimizers)",
        "itertools.product(tasks, self.budgets, self.optimizers[:1])",
        FAMILY_TESTS,
    ),
    Mutation(
        "family-mlp-depth-ignored",
        "lrjax/tasks/family.py",
        'model, label = models.MLP(hidden=(width,) * depth), f"mlp-{width}x{depth}"',
        'model, label = models.MLP(hidden=(width,)), f"mlp-{width}x{depth}"',
        FAMILY_TESTS,
    ),
    Mutation(
        "family-batch-size-ignored",
        "lrjax/tasks/family.py",
        "            model,\n            batch_size,\n            variant=variant,",
        "            model,\n            128,\n            variant=variant,",
        FAMILY_TESTS,
    ),
    Mutation(
        "family-width-and-depth-swapped",
        "lrjax/tasks/family.py",
        '            pick["widths"],\n            pick["depths"],',
        '            pick["depths"],\n            pick["widths"],',
        FAMILY_TESTS,
    ),
    Mutation(
        "family-axis-duplicates-allowed",
        "lrjax/tasks/family.py",
        "or not all(map(valid, values))\n        or len(set(values)) != len(values)",
        "or not all(map(valid, values))\n        or False",
        FAMILY_TESTS,
    ),
    Mutation(
        "family-batch-bound-checks-the-smallest",
        "lrjax/tasks/family.py",
        "if max(self.batch_sizes) > examples:",
        "if min(self.batch_sizes) > examples:",
        FAMILY_TESTS,
    ),
    Mutation(
        "history-best-is-the-worst",
        "lrjax/features/history.py",
        "best=jnp.where(first, ema[1], jnp.minimum(history.best, ema[1])),",
        "best=jnp.where(first, ema[1], jnp.maximum(history.best, ema[1])),",
        HISTORY_TESTS,
    ),
    Mutation(
        "history-start-lr-follows-the-lr",
        "lrjax/features/history.py",
        "start_lr=jnp.where(first, log_lr, history.start_lr),",
        "start_lr=log_lr,",
        HISTORY_TESTS,
    ),
    Mutation(
        "history-start-follows-the-loss",
        "lrjax/features/history.py",
        "start=jnp.where(first, log_loss, history.start),",
        "start=log_loss,",
        HISTORY_TESTS,
    ),
    Mutation(
        "history-ema-decays-swapped",
        "lrjax/features/history.py",
        "decays * history.ema + (1.0 - decays) * log_loss",
        "(1.0 - decays) * history.ema + decays * log_loss",
        HISTORY_TESTS,
    ),
    Mutation(
        "history-nonfinite-loss-reads-as-1",
        "lrjax/features/history.py",
        "jnp.minimum(log_loss, MAX_LOG_LOSS), MAX_LOG_LOSS)",
        "jnp.minimum(log_loss, MAX_LOG_LOSS), 0.0)",
        HISTORY_TESTS,
    ),
    Mutation(
        "family-ppo-one-draw-for-every-update",
        "lrjax/algos/family.py",
        "key = jax.random.fold_in(state.sample_key, int(state.updates_done))",
        "key = state.sample_key",
        (SETTINGS + "family_ppo_draws_update_u_from_fold_in_of_its_sample_key",),
    ),
    Mutation(
        "family-ppo-horizon-is-the-budget",
        "lrjax/algos/family.py",
        "horizon=sample.budget // k,",
        "horizon=sample.budget,",
        FAMILY_PPO_ENVS,
    ),
    Mutation(
        "family-ppo-starts-every-optimizer-at-sgds-lr",
        "lrjax/algos/family.py",
        "controller = c.with_initial_lr(self.starts[sample.optimizer])",
        'controller = c.with_initial_lr(self.starts["sgd"])',
        FAMILY_PPO_ENVS,
    ),
    Mutation(
        "family-ppo-trains-every-sample-with-sgd",
        "lrjax/algos/family.py",
        "optimizer=sample.optimizer,",
        'optimizer="sgd",',
        FAMILY_PPO_ENVS,
    ),
    Mutation(
        "with-initial-lr-keeps-the-bounds",
        "lrjax/controller/config.py",
        "lr_min=tidy(self.lr_min * factor),",
        "lr_min=tidy(self.lr_min),",
        HISTORY_TESTS,
    ),
    Mutation(
        "with-initial-lr-factor-inverted",
        "lrjax/controller/config.py",
        "factor = float(initial_lr) / self.initial_lr",
        "factor = self.initial_lr / float(initial_lr)",
        HISTORY_TESTS,
    ),
    Mutation(
        "loss-only-features-normalised-per-run",
        "lrjax/controller/config.py",
        '"features": FeatureSpec(features=LOSS_ONLY_FEATURES, normaliser="none"),',
        '"features": FeatureSpec(features=LOSS_ONLY_FEATURES, normaliser="ema"),',
        (SETTINGS + "the_family_controller_observes_the_loss_only_features_unnormalised",),
    ),
    Mutation(
        "tuning-never-extends-upwards",
        "lrjax/evaluation/protocol.py",
        "elif best == lrs[-1] and best * step <= b.bounds[1]:",
        "elif best == lrs[-1] and best * step <= b.bounds[0]:",
        (PROTOCOL + "tuning_grows_an_edge_winners_grid_until_the_winner_is_interior",),
    ),
    Mutation(
        "tuning-never-extends-downwards",
        "lrjax/evaluation/protocol.py",
        "if best == lrs[0] and best / step >= b.bounds[0]:",
        "if best == lrs[0] and best / step >= b.bounds[1]:",
        (PROTOCOL + "tuning_grows_an_edge_winners_grid_until_the_winner_is_interior",),
    ),
    Mutation(
        "tuning-refines-at-half-decades",
        "lrjax/evaluation/protocol.py",
        "quarter = 10.0**0.25",
        "quarter = 10.0**0.5",
        ("tests/test_evaluation_protocol.py",),
    ),
    Mutation(
        "tuned-best-lr-is-the-worst",
        "lrjax/evaluation/protocol.py",
        "return self.lrs[int(np.argmin(self.validation_loss))]",
        "return self.lrs[int(np.argmax(self.validation_loss))]",
        ("tests/test_evaluation_protocol.py",),
    ),
    Mutation(
        "held-out-baseline-at-its-smallest-lr",
        "lrjax/evaluation/protocol.py",
        "shapes = np.stack([t.baseline.schedule(t.best_lr, horizon) for t in mine])",
        "shapes = np.stack([t.baseline.schedule(t.lrs[0], horizon) for t in mine])",
        (
            "tests/test_evaluation_batch.py::"
            "test_each_controller_runs_as_it_would_alone_in_its_own_environment",
        ),
    ),
    Mutation(
        "interval-uses-the-normal-quantile",
        "lrjax/evaluation/stats.py",
        "half = stats.t.ppf((1 + confidence) / 2, df) * std / np.sqrt(np.where(ok, n, 1))",
        "half = stats.norm.ppf((1 + confidence) / 2) * std / np.sqrt(np.where(ok, n, 1))",
        ("tests/test_evaluation_stats.py",),
    ),
    Mutation(
        "interval-std-without-bessel",
        "lrjax/evaluation/stats.py",
        "std = float(np.std(x, ddof=1))",
        "std = float(np.std(x, ddof=0))",
        ("tests/test_evaluation_stats.py",),
    ),
    Mutation(
        "test-loss-of-the-first-curve-point",
        "lrjax/evaluation/episodes.py",
        'test_loss = np.where(diverged, np.inf, np.asarray(curve["loss"])[:, -1])',
        'test_loss = np.where(diverged, np.inf, np.asarray(curve["loss"])[:, 0])',
        ("tests/test_evaluation_batch.py::test_arrays_have_one_row_per_method_and_seed",),
    ),
    Mutation(
        "schedules-on-the-wrong-episodes",
        "lrjax/evaluation/episodes.py",
        "per_episode = jnp.repeat(jnp.asarray(schedules), num_episodes, axis=0)",
        "per_episode = jnp.tile(jnp.asarray(schedules), (num_episodes, 1))",
        ("tests/test_evaluation_episodes.py",),
    ),
    Mutation(
        "summary-difference-reversed",
        "lrjax/evaluation/batch.py",
        "d = paired_difference(ref, e.test_loss)",
        "d = paired_difference(e.test_loss, ref)",
        ("tests/test_evaluation_batch.py::test_summary_statistics_match_a_hand_computation",),
    ),
    Mutation(
        "transfer-regret-not-relative",
        "lrjax/evaluation/transfer.py",
        "return (v[usable] / best[usable] - 1.0).mean(axis=0)",
        "return (v[usable] - best[usable]).mean(axis=0)",
        ("tests/test_evaluation_transfer.py::test_relative_regret_by_hand",),
    ),
    Mutation(
        "td-target-max-of-twin-critics",
        "lrjax/algos/actor_critic_math.py",
        "q_next = jnp.min(",
        "q_next = jnp.max(",
        ("tests/test_actor_critic_stabilisers.py::test_td_target_is_the_smaller_critics",),
    ),
    Mutation(
        "twin-actor-ascends-the-second-critic",
        "lrjax/algos/actor_critic.py",
        "g_actor = actor_gradient(q_net, critics[0], actor, carry, actor_obs, lr, c)",
        "g_actor = actor_gradient(q_net, critics[-1], actor, carry, actor_obs, lr, c)",
        (
            "tests/test_actor_critic_stabilisers.py::test_twin_critics_fit_one_target_the_minimum_of_both",
        ),
    ),
    Mutation(
        "td-target-from-the-learning-actor",
        "lrjax/algos/actor_critic.py",
        "_, u_next, _ = actor_step(jax.lax.stop_gradient(target_actor), carry, next_obs, c)",
        "_, u_next, _ = actor_step(jax.lax.stop_gradient(actor), carry, next_obs, c)",
        (
            "tests/test_actor_critic_stabilisers.py::test_the_td_targets_next_action_is_the_target_actors",
        ),
    ),
    Mutation(
        "polyak-update-reversed",
        "lrjax/algos/actor_critic.py",
        "optax.incremental_update(critic, state.target_critic, tau),",
        "optax.incremental_update(state.target_critic, critic, tau),",
        (
            "tests/test_actor_critic_stabilisers.py::test_target_networks_move_by_tau_and_change_the_td_target",
        ),
    ),
    Mutation(
        "policy-delay-ignored",
        "lrjax/algos/actor_critic.py",
        "& ((state.steps_done // k) % cfg.policy_delay == 0)",
        "& ((state.steps_done // k) % 1 == 0)",
        (
            "tests/test_actor_critic_stabilisers.py::test_policy_delay_moves_the_actor_every_dth_step_only",
        ),
    ),
    Mutation(
        "critic-warmup-ignored",
        "lrjax/algos/actor_critic.py",
        "& (state.steps_done >= cfg.critic_warmup)",
        "& (state.steps_done >= 0)",
        (
            "tests/test_actor_critic_stabilisers.py::test_critic_warmup_holds_the_actor_while_the_critic_learns",
        ),
    ),
    Mutation(
        "target-noise-unclipped",
        "lrjax/algos/actor_critic.py",
        "u_next = u_next + jnp.clip(smooth, -cfg.target_noise_clip, cfg.target_noise_clip)",
        "u_next = u_next + smooth",
        (
            "tests/test_actor_critic_stabilisers.py::test_target_noise_changes_the_target_and_its_clip_bounds_it",
        ),
    ),
    Mutation(
        "reward-scale-ignored",
        "lrjax/algos/actor_critic.py",
        "cfg.reward_scale * reward,",
        "reward,",
        (
            "tests/test_actor_critic_stabilisers.py::test_reward_scale_multiplies_the_rewards_of_the_td_target",
        ),
    ),
    Mutation(
        "log-action-position-clipped",
        "lrjax/controller/actor.py",
        "log_lr = jnp.log(jnp.float32(config.initial_lr)) + jnp.where(jnp.isnan(u), 0.0, u)",
        "log_lr = jnp.log(action_to_lr(u, prev_lr, config))",
        (
            "tests/test_actor_critic_stabilisers.py::test_log_actions_are_the_clipped_lr_and_keep_a_gradient_past_a_bound",
        ),
    ),
    Mutation(
        "base-schedule-factor-not-applied",
        "lrjax/controller/transform.py",
        "scaled = jax.tree.map(lambda u: _scaled(u, lr * factor), updates)",
        "scaled = jax.tree.map(lambda u: _scaled(u, lr), updates)",
        ("tests/test_base_schedule.py",),
    ),
    Mutation(
        "env-base-schedule-one-action-late",
        "lrjax/env.py",
        "factor = controller.schedule_factor(state.t / self.config.horizon)",
        "factor = controller.schedule_factor((state.t + 1) / self.config.horizon)",
        ("tests/test_env.py::test_saved_controller_in_a_plain_loop_applies_the_env_lrs",),
    ),
    Mutation(
        "family-run-signature-drops-the-task",
        "lrjax/cli/train.py",
        "    else:  # the family draws the task and its batch size, budget and optimizer\n"
        "        ignored |= FAMILY_DRAWN\n"
        '    if getattr(args, "actions_per_run", None) is None:  # ditto, before actions_per_run\n'
        '        ignored.add("actions_per_run")\n',
        '    if getattr(args, "actions_per_run", None) is None:  # ditto, before actions_per_run\n'
        '        ignored.add("actions_per_run")\n'
        "    else:  # the family draws the task and its batch size, budget and optimizer\n"
        "        ignored |= FAMILY_DRAWN\n",
        (
            "tests/test_cli.py::test_the_run_signature_holds_the_task_with_actions_per_run_and_not_for_a_family",
        ),
    ),
    Mutation(
        "independent-reward-on-the-steps-minibatch",
        "lrjax/algos/actor_critic.py",
        "batch_r = jax.random.fold_in(batch_key, 4)",
        "batch_r = batch_key",
        (
            "tests/test_actor_critic_reward.py::test_the_independent_reward_is_the_decrement_on_a_fresh_minibatch",
        ),
    ),
    Mutation(
        "segment-reward-not-summed",
        "lrjax/algos/actor_critic.py",
        "reward = jnp.where(acts, 0.0, episode.segment_reward) + reward",
        "reward = reward",
        (
            "tests/test_actor_critic_segments.py::test_an_actions_reward_is_the_sum_of_its_steps_decrements",
        ),
    ),
    Mutation(
        "group-momentum-ignores-beta",
        "lrjax/controller/layer_transform.py",
        "lambda g, t, b: g + b.astype(t.dtype) * t, updates, trace, per_leaf(groups, momentum)",
        "lambda g, t, b: g + 0.9 * t, updates, trace, per_leaf(groups, momentum)",
        (
            "tests/test_layer_env.py::test_the_environments_per_layer_actions_replay_in_a_plain_optax_loop",
            "tests/test_layer_controller.py::test_momentum_control_is_heavy_ball_sgd_and_stays_in_bounds",
        ),
    ),
    Mutation(
        "group-depth-reversed",
        "lrjax/controller/groups.py",
        "return jnp.arange(self.size, dtype=jnp.float32) / max(self.size - 1, 1)",
        "return jnp.arange(self.size, dtype=jnp.float32)[::-1] / max(self.size - 1, 1)",
        (
            "tests/test_layer_controller.py::test_groups_are_layers_in_depth_order_or_the_labels_given",
        ),
    ),
    Mutation(
        "env-group-anchor-never-moves",
        "lrjax/env.py",
        'anchor = trainee.params if "group_step_vs_mean" in cfg.controller.group_features else ()',
        """anchor = state.anchor""",
        (
            "tests/test_layer_env.py::test_the_environments_per_layer_actions_replay_in_a_plain_optax_loop",
        ),
    ),
    Mutation(
        "momentum-controller-evaluated-under-sgd",
        "lrjax/evaluation/protocol.py",
        'own = {"optimizer": "momentum"} if config.momentum_control else {}',
        "own = {}",
        (
            "tests/test_evaluation_protocol.py::test_a_momentum_controller_runs_under_the_momentum_it_sets",
        ),
    ),
    Mutation(
        "baselines-run-in-a-momentum-controllers-env",
        "lrjax/evaluation/batch.py",
        "plain = first is not None and not first.config.layered",
        "plain = first is not None",
        (
            "tests/test_evaluation_batch.py::test_a_momentum_controller_first_is_evaluated_beside_sgd_and_momentum_baselines",
        ),
    ),
    Mutation(
        "single-channel-conv-scaled",
        "lrjax/models/layers.py",
        "return out.T.reshape(*stacked.shape[1:], cout)",
        "return 1.01 * out.T.reshape(*stacked.shape[1:], cout)",
        ("tests/test_models.py::test_single_channel_conv_equals_nn_conv_in_value_and_gradients",),
    ),
    Mutation(
        "single-channel-conv-windows-reversed",
        "lrjax/models/layers.py",
        "stacked = jnp.stack([tile[..., 0] for tile in tiles])",
        "stacked = jnp.stack([tile[..., 0] for tile in tiles[::-1]])",
        ("tests/test_models.py::test_single_channel_conv_equals_nn_conv_in_value_and_gradients",),
    ),
    Mutation(
        "pool-derivative-by-equality-with-the-maximum",
        "lrjax/models/layers.py",
        "return _max_2x2_windows(x.reshape(*lead, h // 2, 2, w // 2, 2, c))",
        "return jnp.max(x.reshape(*lead, h // 2, 2, w // 2, 2, c), axis=(-4, -2))",
        (
            "tests/test_models.py::test_max_pool_2x2_gives_a_tie_to_the_first_maximum_as_nn_max_pool_does",
            "tests/test_models.py::test_first_conv_block_gradient_equals_the_stock_block",
        ),
    ),
    Mutation(
        "pool-tie-to-a-later-maximum",
        "lrjax/models/layers.py",
        "take_b = (b_value > a_value) | ((b_value == a_value) & (b_index < a_index))",
        "take_b = (b_value > a_value) | ((b_value == a_value) & (b_index > a_index))",
        (
            "tests/test_models.py::test_max_pool_2x2_gives_a_tie_to_the_first_maximum_as_nn_max_pool_does",
        ),
    ),
    Mutation(
        "resnet-trains-with-patches-on-cpu",
        "lrjax/models/resnet.py",
        'cpu_conv_impl: ClassVar[str] = "xla"',
        'cpu_conv_impl: ClassVar[str] = "patches"',
        ("tests/test_engine.py::test_cpu_training_convolution_follows_the_model",),
    ),
    Mutation(
        "vmapped-items-train-with-the-model-convolution",
        "lrjax/engine.py",
        'cpu_train_conv = cpu_conv_impl if batching == "map" else "patches"',
        "cpu_train_conv = cpu_conv_impl",
        ("tests/test_engine.py::test_cpu_training_convolution_follows_the_model",),
    ),
    Mutation(
        "segment-learns-at-every-step",
        "lrjax/algos/actor_critic.py",
        "learns = None if k == 1 else (t % k == 0) | episode_end",
        "learns = None if k == 1 else (t >= 0) | episode_end",
        (
            "tests/test_actor_critic_segments.py::test_the_lr_is_held_between_actions_and_the_networks_learn_once_per_action",
        ),
    ),
    Mutation(
        "next-minibatch-gradient-not-reset-to-w0",
        "lrjax/algos/actor_critic.py",
        "lambda w0, w: jnp.where(episode_end, w0, w), episode.initial_params, params",
        "lambda w0, w: w, episode.initial_params, params",
        (
            "tests/test_actor_critic_minibatch.py::test_with_a_frozen_actor_the_run_is_paper_bs_across_resets",
        ),
    ),
    Mutation(
        "next-minibatch-is-another-draw",
        "lrjax/algos/actor_critic.py",
        "next_batch = jax.random.split(key)[1]",
        "next_batch = jax.random.split(key)[0]",
        (
            "tests/test_actor_critic_minibatch.py::test_with_a_frozen_actor_the_run_is_paper_bs_across_resets",
        ),
    ),
    Mutation(
        "history-noise-ignores-the-mean-change",
        "lrjax/features/history.py",
        "deviation = change - history.step_mean",
        "deviation = change",
        (
            "tests/test_features_history.py::test_loss_noise_is_the_spread_of_the_changes_by_hand_and_zero_for_a_steady_fall",
        ),
    ),
    Mutation(
        "family-name-not-expanded",
        "lrjax/tasks/__init__.py",
        "out += [t.name for t in FAMILIES[name].variants()]",
        "out.append(name)",
        (
            "tests/test_tasks_family.py::test_a_familys_variants_are_tasks_by_name_and_a_familys_name_expands_to_them",
        ),
    ),
    Mutation(
        "env-bounds-never-follow-the-start",
        "lrjax/env.py",
        "if not self.config.bounds_follow_start:\n            return 1.0",
        "if True:\n            return 1.0",
        ("tests/test_env.py::test_an_episodes_bounds_move_with_its_drawn_start_only_when_asked",),
    ),
)


def _copy_project(dest: Path) -> None:
    # Tracked files and new ones git does not ignore (tests not committed yet), as they are
    # in the working tree.
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in files:
        if not (REPO / name).is_file():  # deleted in the working tree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(copy))
    shared = REPO.parent / "shared" / "data"  # the copy is not beside ../shared
    if shared.is_dir():
        env.setdefault("LRJAX_RAW_DIR", str(shared))
    return env


def _pytest(copy: Path, tests, workers: int) -> tuple[bool, float, str]:
    """Whether ``tests`` pass in the copy, in how many seconds, and the first test that failed
    (pytest's short summary; "" when none did)."""
    start = time.perf_counter()
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-rfE", "-p", "no:cacheprovider", *tests]
    if workers > 1:
        argv += ["-n", str(workers)]
    done = subprocess.run(argv, cwd=copy, env=_env(copy), capture_output=True, text=True)
    if done.returncode in (4, 5):  # a usage error or no test collected: nothing was checked
        sys.exit(f"pytest ran no test of {' '.join(tests)}:\n{done.stdout[-2000:]}")
    failed = [
        line.split()[1]
        for line in done.stdout.splitlines()
        if line.startswith(("FAILED ", "ERROR "))
    ]
    return done.returncode == 0, time.perf_counter() - start, failed[0] if failed else ""


def _check_imports_the_copy(copy: Path) -> None:
    code = "import lrjax, sys; print(lrjax.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=_env(copy), capture_output=True, text=True
    ).stdout.strip()
    if not where.startswith(str(copy)):
        sys.exit(f"the copy's tests would import lrjax from {where}, not from {copy}")


def run(mutations, workers: int) -> int:
    with tempfile.TemporaryDirectory(prefix="lrjax-mutants-") as tmp:
        copy = Path(tmp) / "lrjax"
        _copy_project(copy)
        _check_imports_the_copy(copy)
        tests = sorted({t for m in mutations for t in m.tests})
        passed, seconds, failed = _pytest(copy, tests, workers)
        print(f"unmutated copy: tests {'pass' if passed else 'FAIL'} ({seconds:.0f} s)", flush=True)
        if not passed:
            print(f"first failure: {failed}")
            return 1
        print(
            "| mutation | file | tests | result | caught by | seconds |\n|---|---|---|---|---|---|",
            flush=True,
        )
        missed = 0
        for m in mutations:
            path = copy / m.path
            original = path.read_text()
            if original.count(m.old) != 1:
                sys.exit(f"{m.name}: the text to mutate is not exactly once in {m.path}")
            path.write_text(original.replace(m.old, m.new))
            try:
                survived, seconds, failed = _pytest(copy, m.tests, workers)
            finally:
                path.write_text(original)
            missed += survived
            result = "MISSED" if survived else "caught"
            names = ", ".join(Path(t).name for t in m.tests)
            by = failed.split("::")[-1] if failed else ""
            print(
                f"| {m.name} | {m.path} | {names} | {result} | {by} | {seconds:.0f} |", flush=True
            )
        print(f"\n{len(mutations) - missed} of {len(mutations)} caught, {missed} missed")
        return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutation names")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers")
    args = parser.parse_args()
    chosen = MUTATIONS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m.name for m in MUTATIONS}
        if unknown:
            parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
        chosen = tuple(m for m in MUTATIONS if m.name in wanted)
    if args.list:  # and check that each one still applies to the working tree
        stale = 0
        for m in chosen:
            count = (REPO / m.path).read_text().count(m.old)
            stale += count != 1
            where = "" if count == 1 else f"  [STALE: the text occurs {count} times]"
            print(f"{m.name}: {m.path}: {m.old!r} -> {m.new!r}{where}")
        return 1 if stale else 0
    return run(chosen, args.workers)


if __name__ == "__main__":
    sys.exit(main())
