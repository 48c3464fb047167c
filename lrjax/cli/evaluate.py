"""``lrjax evaluate``: controllers against tuned baselines on held-out seeds (``lrjax.protocol``).

  lrjax evaluate --controller runs/ppo-fashion_mlp/controller --task fashion_mlp --out results/x

Tunes the baselines (constant LR, step decay, cosine with warm-up, Adam) on ``--tune-seeds``
episodes, and/or takes them as tuned in previous ``tuning.json`` files (``--tuning``: e.g.
those tuned on the source task of a transfer), then runs every controller and baseline on
``--seeds`` held-out episodes. Prints and writes ``results.md`` (test loss and accuracy with
95% CIs, paired differences), ``evaluation.json``, ``tuning.json`` and ``curves.png``
(validation-loss curves with 95% bands, and the LR schedules).
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
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--controller",
        action="append",
        required=True,
        help="a saved controller directory or a pretrained name (lrjax.pretrained); repeat "
        "for several; NAME=PATH labels one",
    )
    _common.add_task_option(p, detailed)
    p.add_argument("--horizon", type=int, default=40, help="controller actions per episode")
    p.add_argument("--batch-size", type=int, default=None, help="trainee minibatch size")
    p.add_argument(
        "--baselines",
        default="constant,step_decay,cosine_warmup,adam",
        help="comma-separated baseline families (lrjax.protocol.BASELINES)",
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
        "source task); repeatable",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1000,
        help="root seed of tuning and evaluation episodes (keep it apart from training seeds)",
    )
    p.add_argument("--out", default=None, help="output directory (default: results/TASK)")
    _common.add_data_options(p)


def _load(spec: str):
    from lrjax import pretrained
    from lrjax.controller import load_controller

    name, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
    if path in pretrained.available():
        return name or path, pretrained.load(path)
    return name or Path(path).parent.name or path, load_controller(path)


def _check_args(args) -> None:
    from lrjax._validation import ConfigError, check_positive_int
    from lrjax.protocol import BASELINES

    check_positive_int("--horizon", args.horizon)
    check_positive_int("--seeds", args.seeds)
    if args.seeds < 2:
        raise ConfigError(f"--seeds={args.seeds} is not allowed: confidence intervals need >= 2.")
    if args.tune_seeds < 0 or (args.tune_seeds == 0 and not args.tuning):
        raise ConfigError(
            f"--tune-seeds={args.tune_seeds} is not allowed: expected > 0, or 0 with --tuning."
        )
    for b in args.baselines.split(","):
        if b not in BASELINES:
            raise ConfigError(
                f"--baselines entry {b!r} is not allowed: expected some of {', '.join(BASELINES)}."
            )


def _tuned_baselines(args, env, key, data, out: Path):
    """The baselines as read from ``--tuning`` files and/or tuned here on ``--tune-seeds``
    (written to ``tuning.json``), printed, and a label of where they were tuned."""
    from lrjax import protocol

    names = args.baselines.split(",")
    tuned = []
    for path in args.tuning:
        saved = json.loads(Path(path).read_text())
        tuned += protocol.read_tuning(saved, names)
        print(f"baselines as tuned on {saved['task']} ({path})")
    if args.tune_seeds:
        print(f"tuning on {args.tune_seeds} seeds ...", flush=True)
        families = [protocol.BASELINES[b] for b in names]
        here = protocol.tune_baselines(env, families, key, data, args.tune_seeds)
        saved = {
            "task": args.task,
            "horizon": args.horizon,
            "tune_seeds": args.tune_seeds,
            "baselines": [t.to_json() for t in here],
        }
        (out / "tuning.json").write_text(json.dumps(saved, indent=1))
        tuned += here
    for t in tuned:
        edge = " (at the end of its grid: a better LR may lie beyond)" if t.at_edge else ""
        print(
            f"  {t.baseline.name}: best LR {t.best_lr:.3g} of {[f'{x:.3g}' for x in t.lrs]}{edge}"
        )
    tuned_on = ", ".join(
        dict.fromkeys([t.tuned_on or f"{args.task} ({args.tune_seeds} seeds)" for t in tuned])
    )
    return tuned, tuned_on


def _write_evaluation(out: Path, args, tuned_on: str, methods) -> None:
    """``evaluation.json``: every method's per-seed results."""
    per_method = {
        m.name: {
            "test_loss": m.episodes.test_loss.tolist(),
            "test_accuracy": m.episodes.test_accuracy.tolist(),
            "validation_loss": m.episodes.validation_loss.tolist(),
            "lr": m.episodes.lr.tolist(),
        }
        for m in methods
    }
    summary = {"task": args.task, "tuned_on": tuned_on, "seeds": args.seeds, "methods": per_method}
    (out / "evaluation.json").write_text(json.dumps(summary))


def run(args) -> int:
    import jax

    from lrjax import plots, protocol, tasks
    from lrjax.env import EnvConfig, TraineeEnv

    _check_args(args)
    controllers = dict(_load(s) for s in args.controller)
    first = next(iter(controllers.values()))
    out = Path(args.out or f"results/{args.task}")
    out.mkdir(parents=True, exist_ok=True)
    overrides = {} if args.batch_size is None else {"batch_size": args.batch_size}
    task = tasks.get_task(args.task, **overrides)
    env = TraineeEnv(task, EnvConfig(controller=first.config, horizon=args.horizon))
    for name, c in controllers.items():
        if c.config.steps_per_action != first.config.steps_per_action:
            from lrjax._validation import ConfigError

            raise ConfigError(
                f"controller {name!r} acts every {c.config.steps_per_action} steps, the first "
                f"every {first.config.steps_per_action}: evaluate them separately."
            )
    key = jax.random.key(args.seed)
    data = _common.load_task_data(task, jax.random.fold_in(key, 2), args)
    k = env.config.steps_per_action
    print(
        f"{args.task}: episodes of {args.horizon} actions x {k} steps; "
        f"{len(controllers)} controller(s); baselines {args.baselines}",
        flush=True,
    )

    start = time.perf_counter()
    tuned, tuned_on = _tuned_baselines(args, env, jax.random.fold_in(key, 0), data, out)
    tune_seconds = time.perf_counter() - start

    print(f"evaluating on {args.seeds} held-out seeds ...", flush=True)
    start = time.perf_counter()
    methods = protocol.evaluate_methods(
        env, controllers, tuned, jax.random.fold_in(key, 1), data, args.seeds
    )
    eval_seconds = time.perf_counter() - start
    reference = next(iter(controllers))
    table = protocol.results_table(methods, reference)
    header = (
        f"{args.task}, {args.horizon} actions x {k} steps, baselines tuned on {tuned_on}, "
        f"{args.seeds} held-out seeds "
        f"(root seed {args.seed}); tuning {tune_seconds:.0f} s, evaluation {eval_seconds:.0f} s"
    )
    (out / "results.md").write_text(f"{header}\n\n{table}\n")
    _write_evaluation(out, args, tuned_on, methods)
    plots.plot_methods(methods, out / "curves.png", title=header.split(",")[0], steps_per_action=k)
    print(header)
    print(table)
    print(f"written: {out / 'results.md'}, {out / 'evaluation.json'}, {out / 'curves.png'}")
    return 0
