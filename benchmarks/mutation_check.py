"""Mutation check: do the tests catch the bugs that matter?

Each mutation is one small deliberate bug (a sign, a mask, a forgotten update) in one file. The
script copies the project's tracked files to a temporary folder once, and for each mutation
writes the bug into the copy, runs the tests that should catch it there (the copy's own
``lrjax``), restores the file, and prints caught (the tests failed) or MISSED (they passed).
First it runs every listed test file on the unmutated copy: they must pass, or no result means
anything.

    .venv/bin/python benchmarks/mutation_check.py                 # all (~21 min on 2 cores)
    .venv/bin/python benchmarks/mutation_check.py --only gae-reset-flags,critic-never-trained
    .venv/bin/python benchmarks/mutation_check.py --list

Written by hand: mutation tools (mutmut, cosmic-ray) mutate every operator they find and take
hours on a JAX project whose tests compile; this list names the bugs issue 15 found slipping
through, plus one per important public module.
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


PPO_TESTS = (
    "tests/test_algos_ppo_wiring.py",
    "tests/test_algos_ppo.py",
    "tests/test_algos_ppo_math.py",
)
FEATURE_TESTS = ("tests/test_features.py", "tests/test_controller_transform.py")
BASELINE_TESTS = ("tests/test_baselines_behaviour.py",)

MUTATIONS = (
    # -- caught when issue 15 was filed (keep them caught) --------------------------------------
    Mutation(
        "gae-done-mask-off-by-one",
        "lrjax/algos/ppo_math.py",
        "not_done = 1.0 - dones.astype(dtype)",
        "not_done = 1.0 - jnp.roll(dones, 1, axis=0).astype(dtype)",
        PPO_TESTS,
    ),
    Mutation(
        "clip-max-not-min",
        "lrjax/algos/ppo_math.py",
        "loss = -jnp.mean(jnp.minimum(unclipped, clipped))",
        "loss = -jnp.mean(jnp.maximum(unclipped, clipped))",
        PPO_TESTS,
    ),
    Mutation(
        "scale-action-sign",
        "lrjax/controller/actor.py",
        "lr = prev * jnp.exp(log_alpha * jnp.tanh(u))",
        "lr = prev * jnp.exp(-log_alpha * jnp.tanh(u))",
        ("tests/test_controller_actor.py", "tests/test_controller_transform.py"),
    ),
    Mutation(
        "skipped-step-still-acts",
        "lrjax/controller/transform.py",
        "acts = finite & acts_now",
        "acts = acts_now",
        ("tests/test_controller_transform.py", "tests/test_controller_nonfinite.py"),
    ),
    Mutation(
        "skipped-step-counted",
        "lrjax/controller/transform.py",
        "count=jnp.where(finite, optax.safe_increment(state.count), state.count),",
        "count=optax.safe_increment(state.count),",
        ("tests/test_controller_transform.py", "tests/test_controller_nonfinite.py"),
    ),
    Mutation(
        "reward-not-negated",
        "lrjax/mdp.py",
        "return -loss / initial_loss\n",
        "return loss / initial_loss\n",
        ("tests/test_env.py", "tests/test_mdp.py"),
    ),
    Mutation(
        "divergence-penalty-off-by-one",
        "lrjax/mdp.py",
        "return -factor * (horizon - t + 1).astype(jnp.float32)",
        "return -factor * (horizon - t).astype(jnp.float32)",
        ("tests/test_env.py", "tests/test_mdp.py"),
    ),
    # -- missed when issue 15 was filed ---------------------------------------------------------
    Mutation(
        "gae-reset-flags",
        "lrjax/algos/ppo.py",
        "traj.reward, traj.value, traj.done, last_value, cfg.gamma, cfg.gae_lambda",
        "traj.reward, traj.value, traj.reset, last_value, cfg.gamma, cfg.gae_lambda",
        PPO_TESTS,
    ),
    Mutation(
        "rollout-carry-not-reset",
        "lrjax/algos/ppo.py",
        "carry = reset_carry(runner.carry, runner.done, ccfg)",
        "carry = runner.carry",
        PPO_TESTS,
    ),
    Mutation(
        "replay-carry-not-reset",
        "lrjax/algos/ppo.py",
        "carry = reset_carry(carry, r, ccfg)",
        "carry = carry",
        PPO_TESTS,
    ),
    Mutation(
        "critic-never-trained",
        "lrjax/algos/ppo.py",
        "total = policy_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy",
        "total = policy_loss + 0.0 * v_loss - cfg.ent_coef * entropy",
        PPO_TESTS,
    ),
    Mutation(
        "entropy-sign",
        "lrjax/algos/ppo.py",
        "total = policy_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy",
        "total = policy_loss + cfg.vf_coef * v_loss + cfg.ent_coef * entropy",
        PPO_TESTS,
    ),
    Mutation(
        "pred-change-var-of-p",
        "lrjax/features/builtin.py",
        "jnp.var(preds - prev)",
        "jnp.var(preds)",
        (*FEATURE_TESTS, "tests/test_env.py"),
    ),
    Mutation(
        "prev-predictions-never-updated",
        "lrjax/controller/transform.py",
        "prev_predictions=keep(predictions, state.prev_predictions),",
        "prev_predictions=state.prev_predictions,",
        FEATURE_TESTS,
    ),
    Mutation(
        "cosine-times-zero",
        "lrjax/baselines/schedules.py",
        "cosine = 0.5 * peak_value * (1 + jnp.cos(jnp.pi * progress))",
        "cosine = 0.0 * peak_value * (1 + jnp.cos(jnp.pi * progress))",
        (*BASELINE_TESTS, "tests/test_evaluation_schedules.py"),
    ),
    Mutation(
        "prodigy-then-scale-0",
        "lrjax/baselines/registry.py",
        'lambda hp, s: optax.contrib.prodigy(hp["learning_rate"]),',
        'lambda hp, s: optax.chain(optax.contrib.prodigy(hp["learning_rate"]), optax.scale(0.0)),',
        BASELINE_TESTS,
    ),
    Mutation(
        "schedule-free-adamw-ascends",
        "lrjax/baselines/registry.py",
        'optax.contrib.schedule_free_adamw(hp["learning_rate"])',
        'optax.contrib.schedule_free_adamw(-hp["learning_rate"])',
        BASELINE_TESTS,
    ),
    # -- one per important public module --------------------------------------------------------
    Mutation(
        "td-error-ignores-gamma",
        "lrjax/algos/actor_critic_math.py",
        "return reward + gamma * jnp.where(terminal, 0.0, q_next) - q",
        "return reward + jnp.where(terminal, 0.0, q_next) - q",
        ("tests/test_algos_actor_critic.py",),
    ),
    Mutation(
        "normaliser-mean-not-count-weighted",
        "lrjax/features/normaliser.py",
        "mean = state.mean + delta * mb / nf",
        "mean = state.mean + delta * 0.5",
        ("tests/test_features.py",),
    ),
    Mutation(
        "skip-nonfinite-keeps-new-state",
        "lrjax/controller/nonfinite.py",
        "keep = lambda new, old: jnp.where(finite, new, old)",
        "keep = lambda new, old: new",
        ("tests/test_controller_nonfinite.py",),
    ),
    Mutation(
        "sgd-hd-hypergradient-sign",
        "lrjax/baselines/hypergradient.py",
        "hypergrad = -_tree_dot(updates, state.prev_grads)",
        "hypergrad = _tree_dot(updates, state.prev_grads)",
        ("tests/test_baselines_hypergradient.py",),
    ),
    Mutation(
        "select-best-picks-worst",
        "lrjax/baselines/registry.py",
        "return int(np.argmin(scores))",
        "return int(np.argmax(scores))",
        ("tests/test_baselines_registry.py", "tests/test_evaluation_batch.py"),
    ),
    Mutation(
        "resume-keeps-rows-after-checkpoint",
        "lrjax/algos/runner.py",
        "path.read_text().splitlines()[:limit]",
        "path.read_text().splitlines()",
        ("tests/test_algos_runner.py",),
    ),
    Mutation(
        "minibatches-always-the-first-examples",
        "lrjax/data/arrays.py",
        "return jax.random.randint(key, (batch_size,), 0, split_size)",
        "return jnp.arange(batch_size) % split_size",
        ("tests/test_data.py",),
    ),
    Mutation(
        "paired-difference-reversed",
        "lrjax/evaluation/stats.py",
        "d = np.asarray(a, np.float64) - np.asarray(b, np.float64)",
        "d = np.asarray(b, np.float64) - np.asarray(a, np.float64)",
        ("tests/test_evaluation_stats.py", "tests/test_evaluation_batch.py"),
    ),
    Mutation(
        "faults-never-injected",
        "lrjax/testing/faults.py",
        "hit = jax.random.uniform(k_hit) < self.rate",
        "hit = jax.random.uniform(k_hit) < 0.0",
        ("tests/test_faults.py",),
    ),
    Mutation(
        "env-ignores-nonfinite-train-loss",
        "lrjax/mdp.py",
        "        | ~jnp.isfinite(trained_on)\n",
        "\n",
        ("tests/test_env.py", "tests/test_faults.py", "tests/test_mdp.py"),
    ),
)


def _copy_project(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)


def _env(copy: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(copy))
    shared = REPO.parent / "shared" / "data"  # the copy is not beside ../shared
    if shared.is_dir():
        env.setdefault("LRJAX_RAW_DIR", str(shared))
    return env


def _pytest(copy: Path, tests, workers: int) -> tuple[bool, float]:
    start = time.perf_counter()
    argv = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    if workers > 1:
        argv += ["-n", str(workers)]
    done = subprocess.run(argv, cwd=copy, env=_env(copy), capture_output=True, text=True)
    return done.returncode == 0, time.perf_counter() - start


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
        passed, seconds = _pytest(copy, tests, workers)
        print(f"unmutated copy: tests {'pass' if passed else 'FAIL'} ({seconds:.0f} s)", flush=True)
        if not passed:
            return 1
        print("| mutation | file | tests | result | seconds |\n|---|---|---|---|---|", flush=True)
        missed = 0
        for m in mutations:
            path = copy / m.path
            original = path.read_text()
            if original.count(m.old) != 1:
                sys.exit(f"{m.name}: the text to mutate is not exactly once in {m.path}")
            path.write_text(original.replace(m.old, m.new))
            try:
                survived, seconds = _pytest(copy, m.tests, workers)
            finally:
                path.write_text(original)
            missed += survived
            result = "MISSED" if survived else "caught"
            names = ", ".join(Path(t).name for t in m.tests)
            print(f"| {m.name} | {m.path} | {names} | {result} | {seconds:.0f} |", flush=True)
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
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.path}: {m.old!r} -> {m.new!r}")
        return 0
    return run(chosen, args.workers)


if __name__ == "__main__":
    sys.exit(main())
