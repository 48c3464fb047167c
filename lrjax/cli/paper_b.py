"""``lrjax paper-b``: paper B's experiments (figures 2-5) as commands that write tables and plots.

  lrjax paper-b compare --task mnist_cnn --steps 1000 --seeds 3 --out results/paper_b_mnist
  lrjax paper-b analysis --problems 8 --steps 1000 --out results/paper_b_2d

``compare``: the online actor-critic against SGD, Adam, Adagrad, RMSprop (each at its best LR of
paper B's grid 1e-4 .. 1, selected on validation), vSGD and Daniel et al.'s REPS controller, on
the same seeds; writes ``comparison.md``, ``comparison.json`` and ``comparison.png``.
``analysis``: section 4.3 on random 2-D regression problems; writes ``analysis.md``,
``analysis.json``, ``trajectories.png`` (figure 4) and ``disagreement.png`` (figure 5).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lrjax.cli import _common
from lrjax.cli.train_options import AC_STABILISERS, AC_STEP_SIZES, add_learner_options


def add_parser(sub, detailed: bool = False) -> None:
    from lrjax.cli import HelpFormatter

    p = sub.add_parser(
        "paper-b",
        help="paper B's experiments: the actor-critic against its baselines; the 2-D analysis",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    which = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    c = which.add_parser(
        "compare",
        help="figures 2 and 3: the online actor-critic against tuned baselines on a task",
        formatter_class=HelpFormatter,
    )
    _common.add_task_option(c, detailed)
    c.set_defaults(task="mnist_cnn")
    c.add_argument("--steps", type=int, default=1000, help="minibatches per run (paper B: 12,000)")
    c.add_argument("--seeds", type=int, default=3, help="seeds, the same for every method")
    c.add_argument("--eval-every", type=int, default=100, help="steps between test evaluations")
    c.add_argument("--eval-examples", type=int, default=1000, help="test examples of the curve")
    c.add_argument(
        "--baselines",
        default="fixed_start,sgd,adam,adagrad,rmsprop,vsgd,daniel_reps",
        help="comma-separated; fixed_start is the actor-critic's optimizer held at its starting "
        "LR, daniel_reps Daniel et al.'s REPS-trained controller",
    )
    c.add_argument("--batch-size", type=int, default=None, help="minibatch (mnist_cnn: 50)")
    c.add_argument("--reps-iterations", type=int, default=8, help="REPS iterations")
    c.add_argument("--reps-samples", type=int, default=8, help="episodes per REPS iteration")
    c.add_argument("--reps-steps", type=int, default=300, help="steps per REPS episode")
    c.add_argument("--seed", type=int, default=0, help="root seed")
    c.add_argument("--out", default=None, help="output directory (default results/paper_b-TASK)")
    c.add_argument(
        "--resume",
        action="store_true",
        help="keep the methods an earlier run of the same command finished in --out; run the rest",
    )
    _common.add_data_options(c)
    learner = c.add_argument_group("the actor-critic (default: paper B's Algorithm 1)")
    learner.add_argument(
        "--action-mode",
        default=None,
        choices=["absolute", "log"],
        help="absolute: the LR through paper B's sigmoid; log: the log-LR relative to the "
        "start, clipped (no saturation) (default absolute)",
    )
    learner.add_argument(
        "--initial-lr",
        type=float,
        default=None,
        help="the LR the actor starts at, in its range [1e-4, 1] (paper B: 0.01)",
    )
    learner.add_argument(
        "--steps-per-action",
        type=int,
        default=None,
        help="k: the actor acts every k steps and the LR is held between (1, Algorithm 1)",
    )
    add_learner_options(learner)
    a = which.add_parser(
        "analysis",
        help="section 4.3: trajectories and gradient disagreement on 2-D regression",
        formatter_class=HelpFormatter,
    )
    a.add_argument("--problems", type=int, default=8, help="random 2-D regression problems")
    a.add_argument("--steps", type=int, default=1000, help="steps per run")
    a.add_argument("--seed", type=int, default=0, help="root seed")
    a.add_argument("--out", default="results/paper_b_2d", help="output directory")


def _out_dir(path: str) -> Path:
    from lrjax._validation import ConfigError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out={path!r} is a file: expected a directory.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run(args) -> int:
    if args.experiment == "analysis":
        return _analysis(args)
    return _compare(args)


def _analysis(args) -> int:
    import jax

    from lrjax import paper_b, plots
    from lrjax._validation import check_positive_int

    check_positive_int("--problems", args.problems)
    check_positive_int("--steps", args.steps)
    out = _out_dir(args.out)
    print(
        f"2-D regression: {args.problems} problems x {args.steps} steps; SGD at "
        "1e-4 .. 1 and the online actor-critic (different and same minibatch) ...",
        flush=True,
    )
    start = time.perf_counter()
    analysis = paper_b.regression_analysis(
        jax.random.key(args.seed), num_problems=args.problems, num_steps=args.steps
    )
    seconds = time.perf_counter() - start
    table = analysis.table()
    command = (
        f"lrjax paper-b analysis --problems {args.problems} --steps {args.steps} --seed {args.seed}"
    )
    (out / "analysis.md").write_text(
        f"`{command}` ({seconds:.0f} s)\n\nFinal test loss over {args.problems} problems, its "
        "ratio to the best constant LR of each problem, and the oscillation (mean |change| of "
        "the test loss per step over the second half):\n\n" + table + "\n"
    )
    _common.write_json(
        out / "analysis.json", {"command": command, "seconds": seconds, "rows": analysis.rows()}
    )
    plots.plot_trajectories(analysis, out / "trajectories.png")
    plots.plot_gradient_disagreement(analysis, out / "disagreement.png")
    print(table)
    print(f"done in {seconds:.0f} s; tables and figures in {out}")
    return 0


def _compare_command(args, names) -> str:
    """The command line that reproduces (and resumes) this comparison."""
    return (
        f"lrjax paper-b compare --task {args.task} --steps {args.steps} --seeds {args.seeds} "
        f"--eval-every {args.eval_every} --baselines {','.join(names)} --reps-iterations "
        f"{args.reps_iterations} --reps-samples {args.reps_samples} --reps-steps {args.reps_steps}"
        + ("" if args.batch_size is None else f" --batch-size {args.batch_size}")
        + f" --seed {args.seed}"
        + "".join(_learner_flags(args))
    )


CONTROLLER_OPTIONS = ("action_mode", "initial_lr", "steps_per_action")
"""The options of ``paper-b compare`` that change the actor's :class:`ControllerConfig` (None:
paper B's preset's)."""
LEARNER_OPTIONS = (
    *CONTROLLER_OPTIONS, "gamma", "exploration_std", *AC_STEP_SIZES, *AC_STABILISERS,
)  # fmt: skip
"""The actor-critic's options of ``paper-b compare`` (None: ActorCriticConfig's default)."""


def _learner_flags(args):
    for name in LEARNER_OPTIONS:
        value = getattr(args, name)
        if value is True:
            yield f" --{name.replace('_', '-')}"
        elif value is not None:
            yield f" --{name.replace('_', '-')} {value}"


def _learner_config(args):
    """The actor-critic's config from the options (paper B's where one is not given)."""
    from lrjax.algos.actor_critic import ActorCriticConfig, ActorCriticEnvConfig
    from lrjax.controller import ControllerConfig

    chosen = {n: getattr(args, n) for n in LEARNER_OPTIONS if n not in CONTROLLER_OPTIONS}
    controller = ControllerConfig.paper_b(
        **{n: getattr(args, n) for n in CONTROLLER_OPTIONS if getattr(args, n) is not None}
    )
    return ActorCriticConfig(
        env=ActorCriticEnvConfig(controller=controller),
        **{k: v for k, v in chosen.items() if v is not None},
    )


def _earlier_results(out: Path, command: str):
    """``(results by method, seconds)`` of the earlier run in ``out`` (``--resume``); it must
    have been the same command."""
    from lrjax import paper_b
    from lrjax._validation import ConfigError

    path = out / "comparison.json"
    if not path.exists():
        return {}, 0.0
    earlier = json.loads(path.read_text())
    if earlier.get("command") != command:
        raise ConfigError(
            f"--resume is not allowed here: {out} holds `{earlier.get('command')}`, not this "
            f"`{command}`; give the same options or a fresh --out."
        )
    results = [paper_b.MethodResult.from_json(r) for r in earlier.get("results", [])]
    return {r.name: r for r in results}, float(earlier.get("seconds", 0.0))


def _report(results, controller) -> str:
    """comparison.md's body: paper B's table, the table paired against the actor-critic, and
    the LR the actor-critic ended at on each seed."""
    from lrjax import paper_b

    parts = [paper_b.comparison_table(results)]
    if results and results[0].name == "actor-critic":
        parts.append(
            "Paired by seed against the actor-critic (final test loss):\n\n"
            + paper_b.paired_table(results)
        )
        parts.append(paper_b.final_lrs(results[0], controller.lr_min, controller.lr_max) + ".")
    return "\n\n".join(parts) + "\n"


def _save_comparison(
    out: Path, command: str, info: str, title: str, methods, results, seconds, controller
):
    """Write ``comparison.md/.json/.png`` with the methods finished so far (rewritten after
    each one, so a stopped run keeps them and ``--resume`` continues from them)."""
    from lrjax import plots

    left = [m for m in methods if m not in {r.name for r in results}]
    status = f"; partial: still to run {', '.join(left)}" if left else ""
    report = _report(results, controller)
    header = f"`{command}` ({seconds:.0f} s; {info}{status})"
    (out / "comparison.md").write_text(f"{header}\n\n{report}")
    summary = {
        "command": command,
        "seconds": seconds,
        "complete": not left,
        "methods": list(methods),
        "rows": [r.row() for r in results],
        "curves": {r.name: r.curves() for r in results},
        "results": [r.to_json() for r in results],
    }
    tmp = _common.write_json(out / "comparison.json.tmp", summary)  # strict: NaN, inf -> null
    tmp.replace(out / "comparison.json")  # whole or not at all: --resume reads it
    plots.plot_paper_b_comparison(results, out / "comparison.png", title=title)


def _compare(args) -> int:
    import jax

    from lrjax import paper_b, tasks
    from lrjax._validation import ConfigError, check_positive_int
    from lrjax.baselines import OPTIMIZERS
    from lrjax.baselines.reps import REPSConfig

    for flag in ("steps", "seeds", "eval_every", "eval_examples"):
        check_positive_int("--" + flag.replace("_", "-"), getattr(args, flag))
    names = [b.strip() for b in args.baselines.split(",") if b.strip()]
    for name in names:
        if name not in (paper_b.FIXED_START, "daniel_reps") and name not in OPTIMIZERS:
            raise ConfigError(
                f"--baselines entry {name!r} is not known: expected fixed_start, daniel_reps or "
                f"one of {', '.join(OPTIMIZERS)}."
            )
    if args.steps % args.eval_every:
        raise ConfigError(
            f"--eval-every={args.eval_every} is not allowed: it must divide --steps={args.steps}."
        )
    reps = REPSConfig(
        iterations=args.reps_iterations,
        samples=args.reps_samples,
        episode_steps=min(args.reps_steps, args.steps),
    )
    out = _out_dir(args.out or f"results/paper_b-{args.task}")
    command = _compare_command(args, names)
    done, earlier_seconds = _earlier_results(out, command) if args.resume else ({}, 0.0)
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    task = tasks.get_task(args.task, **overrides)
    key = jax.random.key(args.seed)
    data = _common.load_task_data(task, jax.random.fold_in(key, 1), args)
    info = f"{args.task}; batch {task.batch_size}; the same {args.seeds} seeds for every method"
    methods = ["actor-critic", *names]
    config = _learner_config(args)
    start = time.perf_counter()
    results = []

    def save(result):
        results.append(result)
        seconds = earlier_seconds + time.perf_counter() - start
        controller = config.env.controller
        _save_comparison(out, command, info, args.task, methods, results, seconds, controller)

    paper_b.compare_on_task(
        task,
        data,
        key,
        num_steps=args.steps,
        num_seeds=args.seeds,
        eval_every=args.eval_every,
        eval_examples=args.eval_examples,
        baselines=names,
        config=config,
        reps=reps,
        done=done,
        on_result=save,
    )
    seconds = earlier_seconds + time.perf_counter() - start
    print(_report(results, config.env.controller), end="")
    print(f"done in {seconds:.0f} s; table, curves and figure in {out}")
    return 0
