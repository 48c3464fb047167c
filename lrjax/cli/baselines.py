"""``lrjax baselines``: baseline optimizers over their grids and seeds, a table, JSON and a plot."""

from __future__ import annotations

import time

from lrjax.cli import _common


def add_parser(sub, detailed: bool = False) -> None:
    from lrjax.cli import HelpFormatter

    epilog = None
    if detailed:
        from lrjax.baselines import OPTIMIZERS

        epilog = "optimizers:\n" + "\n".join(
            f"  {name:20s} {spec.description}" for name, spec in OPTIMIZERS.items()
        )
    p = sub.add_parser(
        "baselines",
        help="run baseline optimizers over LR grids and seeds",
        description="Run each baseline optimizer over its grid x seeds as one compiled program, "
        "select the best configuration on validation loss and report its test loss and "
        "accuracy (mean +- std over seeds); write TASK.json and TASK.png to --out.",
        epilog=epilog,
        formatter_class=HelpFormatter,
    )
    _common.add_task_option(p, detailed)
    p.add_argument(
        "--optimizers",
        default="sgd,adam,adagrad,rmsprop,step_decay",
        help="comma-separated optimizer names (listed below with lrjax baselines --help)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per run")
    p.add_argument("--lrs", help="comma-separated learning rates replacing each grid's LRs")
    p.add_argument(
        "--eval-every", type=int, default=None, help="steps between evaluations (default: steps/10)"
    )
    p.add_argument(
        "--eval-examples", type=int, default=1000, help="examples of intermediate evaluations"
    )
    p.add_argument("--seed", type=int, default=0, help="root key for all runs")
    p.add_argument("--out", default="runs/baselines", help="output directory")
    _common.add_data_options(p)


def run(args) -> int:
    import jax

    from lrjax import baselines, plots, tasks
    from lrjax._validation import ConfigError
    from lrjax.baselines import sweep
    from lrjax.evaluation import tables

    positive = ("seeds", "steps", "eval_every", "eval_examples")
    _common.check_flags(args, positive=positive, non_negative=("seed",))
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    if not names:
        raise ConfigError(
            f"--optimizers={args.optimizers!r} is not allowed: expected comma-separated "
            "optimizer names, e.g. sgd,adam (lrjax baselines --help lists them)."
        )
    specs = [baselines.get_optimizer(n) for n in names]  # unknown names fail before any work
    lrs = _common.parse_floats("--lrs", args.lrs) if args.lrs is not None else None
    if lrs == []:
        raise ConfigError(f"--lrs={args.lrs!r} is not allowed: expected at least one number.")
    for spec in specs:
        spec.grid(lrs)  # validates the LRs
    task = tasks.get_task(args.task)
    out = _common.check_out_dir(args.out)
    key = jax.random.key(args.seed)
    data = _common.load_task_data(task, jax.random.fold_in(key, 1), args)
    eval_every = args.eval_every or max(1, args.steps // 10)

    runs, rows = [], []
    for spec in specs:
        start = time.perf_counter()
        r = sweep.run_optimizer(
            task,
            spec,
            data,
            key,
            num_seeds=args.seeds,
            num_steps=args.steps,
            lrs=lrs,
            eval_every=eval_every,
            eval_examples=args.eval_examples,
            progress=f"{spec.name} ({len(spec.grid(lrs))} configs x {args.seeds} seeds)",
        )
        summary = r.summary() | {
            "seconds": time.perf_counter() - start,
            "num_configs": len(r.configs),
        }
        runs.append(r)
        rows.append(summary)
        print(tables.sweep_row(summary), flush=True)

    out.mkdir(parents=True, exist_ok=True)
    results = {
        "task": args.task,
        "steps": args.steps,
        "seeds": args.seeds,
        "root_seed": args.seed,
        "backend": jax.default_backend(),
        "selection": "lowest mean final validation loss",
        "optimizers": rows,
        "curves": {r.name: r.curves() for r in runs},
    }
    json_path = out / f"{args.task}.json"
    _common.write_json(json_path, results)
    png_path = plots.plot_sweeps(
        runs,
        out / f"{args.task}.png",
        title=f"{args.task}: best configuration per optimizer, mean over {args.seeds} seeds",
    )
    print()
    print(tables.sweep_table(rows))
    print(f"\nresults: {json_path}\nplot:    {png_path}")
    return 0
