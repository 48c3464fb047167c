"""``lrjax evaluate``: controllers against tuned baselines on held-out seeds, on one or more tasks.

  lrjax evaluate --controllers runs/ppo-fashion_mlp/controller,fashion_mlp_ppo \\
      --baselines step_decay,cosine_warmup --tasks fashion_mlp,fashion_cnn --seeds 10

Per task (``lrjax.evaluation.evaluate``), tunes the baselines on ``--tune-seeds`` episodes
and/or takes them as tuned in previous ``tuning.json`` files (``--tuning``: e.g. those of a
transfer's source task), then runs every controller and baseline on the same ``--seeds``
held-out episodes. Prints and writes ``results.md`` (test loss and accuracy with 95% CIs,
paired differences against the first controller or ``--reference``), ``summary.csv``,
``results.csv`` (per seed), ``curves.csv`` (per action: LR, minibatch and validation loss),
``evaluation.json``, the tuning (``tuning.json``; ``tuning-TASK.json`` with several tasks) and
the plots (``curves.png`` or ``curves-TASK.png``: validation-loss curves with 95% bands, and the
LR schedules). A held-out seed that is a controller's training seed (read from its run's
``run.json``, or ``--train-seed``) is reported.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from lrjax.cli import _common


def add_parser(sub, detailed: bool = False) -> None:
    from lrjax.cli import HelpFormatter

    p = sub.add_parser(
        "evaluate",
        help="controllers vs tuned baselines on held-out seeds",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--controller",
        action="append",
        default=[],
        help="a saved controller directory or a pretrained name (lrjax.pretrained); repeat "
        "for several; NAME=PATH labels one",
    )
    p.add_argument(
        "--controllers",
        default="",
        help="comma-separated controllers, as --controller (both may be given)",
    )
    choices = ", ".join(_common.task_names()) if detailed else "see lrjax fit --help"
    p.add_argument(
        "--tasks",
        "--task",
        dest="tasks",
        default="fashion_cnn",
        help=f"comma-separated tasks ({choices}), family variants (e.g. "
        "fashion_mnist/mlp-32x1/b128) or families (all their variants, e.g. mixed_mlp)",
    )
    p.add_argument("--horizon", type=int, default=40, help="controller actions per episode")
    p.add_argument(
        "--steps-per-action",
        type=int,
        default=None,
        help="trainee steps per action (default: the controllers', 10 without any)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="trainee minibatch size")
    p.add_argument(
        "--baselines",
        default="constant,step_decay,cosine_warmup,adam",
        help="comma-separated baseline families to tune here (lrjax.evaluation.BASELINES)",
    )
    p.add_argument(
        "--tune-seeds",
        type=int,
        default=8,
        help="tuning episodes per LR (0: tune nothing here, use --tuning)",
    )
    p.add_argument("--seeds", type=int, default=10, help="held-out episodes per method")
    p.add_argument(
        "--tuning",
        action="append",
        default=[],
        help="also evaluate the baselines as tuned in this tuning.json (e.g. on a transfer's "
        "source task), on every task; repeatable",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1000,
        help="root seed of tuning and evaluation episodes (keep it apart from training seeds)",
    )
    p.add_argument(
        "--train-seed",
        type=int,
        default=None,
        help="the controllers' training root seed, where their run.json does not say it",
    )
    p.add_argument(
        "--reference",
        default=None,
        help="the method of the paired differences: a controller's name or a baseline family "
        "(default: the first controller)",
    )
    p.add_argument(
        "--test-every",
        type=int,
        default=None,
        help="actions between points of the test-loss curve (default: the end only)",
    )
    p.add_argument("--out", default=None, help="output directory (default: results/TASK)")
    _common.add_data_options(p)


def _controller_specs(args) -> list[str]:
    specs = list(args.controller)
    specs += [s.strip() for s in args.controllers.split(",") if s.strip()]
    return specs


def _load(spec: str, train_seed: int | None):
    """``(name, controller, training root seed or None)`` of a ``--controller`` entry."""
    from lrjax import pretrained
    from lrjax.controller import load_controller

    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    if path in pretrained.available():
        seed = pretrained.TRAINING_SEEDS.get(path) if train_seed is None else train_seed
        return name or path, pretrained.load(path), seed
    run = Path(path).parent / "run.json"
    seed = train_seed
    if seed is None and run.is_file():
        seed = json.loads(run.read_text()).get("seed")
    return name or Path(path).parent.name or path, load_controller(path), seed


def _check_args(args) -> None:
    """The options, by their flag names, before any work."""
    from lrjax._validation import ConfigError, check_positive_int
    from lrjax.evaluation.protocol import BASELINES

    check_positive_int("--horizon", args.horizon)
    check_positive_int("--seeds", args.seeds)
    positive = ("steps_per_action", "batch_size")
    _common.check_flags(args, positive=positive, non_negative=("seed", "train_seed"))
    if args.seeds < 2:
        raise ConfigError(f"--seeds={args.seeds} is not allowed: confidence intervals need >= 2.")
    if args.tune_seeds < 0 or (args.tune_seeds == 0 and not args.tuning):
        raise ConfigError(
            f"--tune-seeds={args.tune_seeds} is not allowed: expected > 0, or 0 with --tuning."
        )
    if args.test_every is not None:
        check_positive_int("--test-every", args.test_every)
        if args.horizon % args.test_every:
            raise ConfigError(
                f"--test-every={args.test_every} is not allowed: expected a divisor of "
                f"--horizon ({args.horizon})."
            )
    if not [t for t in args.tasks.split(",") if t.strip()]:
        raise ConfigError(f"--tasks={args.tasks!r} is not allowed: expected task names.")
    names = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in names if b not in BASELINES]
    if unknown:
        raise ConfigError(
            f"--baselines={args.baselines!r} is not allowed: {unknown[0]!r} is not a baseline; "
            f"expected comma-separated names of {', '.join(BASELINES)}."
        )


def _read_tuning(args, names):
    """The baselines of every ``--tuning`` file; a missing or malformed file is a ConfigError
    naming it."""
    from lrjax._validation import ConfigError
    from lrjax.evaluation import protocol

    tuned = []
    for path in args.tuning:
        try:
            saved = json.loads(Path(path).read_text())
            tuned += protocol.read_tuning(saved, names)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ConfigError) as e:
            raise ConfigError(
                f"--tuning={path!r} is not allowed: {str(e).rstrip('.')}. Give a tuning.json "
                "that lrjax evaluate wrote (in its --out)."
            ) from e
        print(f"baselines as tuned on {saved['task']} ({path})")
    return tuned


def _print_tuned(tuned) -> None:
    for t in tuned:
        edge = " (at the end of its grid: a better LR may lie beyond)" if t.at_edge else ""
        print(
            f"  {t.baseline.name}: best LR {t.best_lr:.3g} of {[f'{x:.3g}' for x in t.lrs]}{edge}"
        )


def _per_task(out: Path, stem: str, suffix: str, task: str, several: bool) -> Path:
    """``stem-TASK.suffix`` with several tasks (a family variant's slashes as underscores:
    ``curves-mnist_mlp-32x1_b128.png``), else ``stem.suffix``."""
    label = task.replace("/", "_")
    return out / (f"{stem}-{label}{suffix}" if several else f"{stem}{suffix}")


def _write_evaluation(out: Path, result, tuned_on: dict[str, str]) -> Path:
    """``evaluation.json``: every task's methods with their per-seed results (strict JSON:
    a diverged episode's loss is null)."""

    def clean(x):
        return [None if v != v or v in (float("inf"), float("-inf")) else v for v in x.tolist()]

    saved = {
        "seed": result.seed,
        "seeds": result.num_seeds,
        "reference": result.reference,
        "notes": list(result.notes),
        "tasks": {
            t.task: {
                "tuned_on": tuned_on[t.task],
                "methods": {
                    m.name: {
                        "test_loss": clean(m.episodes.test_loss),
                        "test_accuracy": clean(m.episodes.test_accuracy),
                        "validation_loss": clean(m.episodes.validation_loss),
                        "diverged": m.episodes.diverged.tolist(),
                    }
                    for m in t.methods
                },
            }
            for t in result.tasks
        },
    }
    path = out / "evaluation.json"
    return _common.write_json(path, saved)


def _evaluate(args, task_names, controllers, names, tuning, train_seeds, on_tuned):
    """:func:`lrjax.evaluation.evaluate` with the options (it checks them before any work)."""
    from lrjax import evaluation

    return evaluation.evaluate(
        task_names,
        controllers,
        names if args.tune_seeds else (),
        seeds=args.seeds,
        seed=args.seed,
        tune_seeds=args.tune_seeds,
        tuning=tuning,
        horizon=args.horizon,
        steps_per_action=args.steps_per_action,
        batch_size=args.batch_size,
        test_every=args.test_every,
        reference=args.reference,
        train_seeds=train_seeds,
        load_data=lambda task, key: _common.load_task_data(task, key, args),
        on_tuned=on_tuned,
    )


def run(args) -> int:
    from lrjax import plots

    _check_args(args)
    from lrjax.tasks import expand_task_names

    given = [t.strip() for t in args.tasks.split(",") if t.strip()]
    task_names = expand_task_names(given)
    several = len(task_names) > 1
    loaded = [_load(s, args.train_seed) for s in _controller_specs(args)]
    controllers = {name: c for name, c, _ in loaded}
    train_seeds = {name: s for name, _, s in loaded if s is not None}
    names = [b.strip() for b in args.baselines.split(",") if b.strip()]
    out = _common.check_out_dir(args.out or f"results/{'_'.join(given).replace('/', '_')}")
    tuning = _read_tuning(args, names)
    tuned_on: dict[str, str] = {}

    def on_tuned(task: str, tuned) -> None:
        here = [t for t in tuned if t.tuned_on is None]
        out.mkdir(parents=True, exist_ok=True)  # only once the arguments passed every check
        if here:
            saved = {
                "task": task,
                "horizon": args.horizon,
                "tune_seeds": args.tune_seeds,
                "seed": args.seed,
                "baselines": [t.to_json() for t in here],
            }
            path = _per_task(out, "tuning", ".json", task, several)
            _common.write_json(path, saved)
        print(f"{task}: baselines", flush=True)
        _print_tuned(tuned)
        tuned_on[task] = ", ".join(
            dict.fromkeys(t.tuned_on or f"{task} ({args.tune_seeds} seeds)" for t in tuned)
        )
        print(f"{task}: evaluating on {args.seeds} held-out seeds ...", flush=True)

    print(
        f"evaluating {len(controllers)} controller(s) and baselines {args.baselines} on "
        f"{', '.join(task_names)}; {args.horizon} actions per episode",
        flush=True,
    )
    start = time.perf_counter()
    renames = {"task": "tasks", "task_names": "tasks"}
    with _common.flag_names(args, renames):
        result = _evaluate(args, task_names, controllers, names, tuning, train_seeds, on_tuned)
    seconds = time.perf_counter() - start
    header = (
        f"baselines tuned on {'; '.join(tuned_on.values())}; {args.seeds} held-out seeds "
        f"(root seed {args.seed}); tuning and evaluation {seconds:.0f} s"
    )
    table = result.table()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(f"{header}\n\n{table}\n")
    written = [out / "results.md", *result.write_csv(out), _write_evaluation(out, result, tuned_on)]
    for t in result.tasks:
        path = _per_task(out, "curves", ".png", t.task, several)
        plots.plot_methods(list(t.methods), path, title=t.task, steps_per_action=t.steps_per_action)
        written.append(path)
    print(header)
    print(table)
    print("written: " + ", ".join(str(p) for p in written))
    return 0
