"""The ``lrjax`` command line.

  lrjax data prepare NAME [--raw-dir DIR]   prepare a tfds dataset offline and cache its arrays
  lrjax data info                           show which datasets are prepared, and where
  lrjax fit --task T --optimizer O --lr X   train one trainee and report test loss/accuracy
  lrjax baselines --task T --optimizers ... run baseline optimizers over LR grids and seeds
  lrjax train --algo ppo --task T           train an LR controller with PPO (paper A)

jax is imported only after the command line is parsed, so that the engine can ask XLA for one
host device per core first (see :func:`lrjax.engine.configure_host_devices`).
"""

from __future__ import annotations

import argparse
import sys
import time


def _add_data(sub):
    p = sub.add_parser("data", help="prepare and inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    prep = dsub.add_parser("prepare", help="prepare a dataset with tfds and cache its arrays")
    prep.add_argument("name", help="mnist, fashion_mnist or cifar10")
    prep.add_argument(
        "--raw-dir",
        help="directory with the original distribution files "
        "(default $LRJAX_RAW_DIR; unset: tfds downloads them)",
    )
    prep.add_argument(
        "--data-dir", help="lrjax data root (default $LRJAX_DATA_DIR or ~/.cache/lrjax)"
    )
    prep.add_argument("--overwrite", action="store_true", help="rebuild an existing cache")
    info = dsub.add_parser("info", help="list datasets and whether they are prepared")
    info.add_argument("--data-dir")


def _add_fit(sub):
    p = sub.add_parser("fit", help="train one trainee with a fixed optimizer")
    p.add_argument("--task", default="fashion_cnn")
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--data-dir")
    p.add_argument("--raw-dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lrjax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data(sub)
    _add_fit(sub)
    from lrjax import cli_baselines, cli_train

    cli_baselines.add_parser(sub)
    cli_train.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lrjax.engine import configure_host_devices

    configure_host_devices()
    from lrjax._validation import ConfigError

    try:
        return _dispatch(args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"lrjax: error: {e}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "data":
        return _data(args)
    if args.command == "fit":
        return _fit(args)
    if args.command == "train":
        from lrjax import cli_train

        return cli_train.run(args)
    if args.command == "baselines":
        from lrjax import cli_baselines

        return cli_baselines.run(args)
    raise AssertionError(args.command)


def _data(args) -> int:
    from lrjax.data import catalog

    if args.data_command == "prepare":
        from lrjax.data.prepare import prepare_dataset

        prepare_dataset(
            args.name, raw_dir=args.raw_dir, data_dir=args.data_dir, overwrite=args.overwrite
        )
        return 0
    root = catalog.data_dir(args.data_dir)
    for name in catalog.DATASETS:
        path = catalog.cache_path(name, root)
        print(f"{name:15s} {'prepared  ' + str(path) if path.exists() else 'not prepared'}")
    return 0


def _fit(args) -> int:
    import jax

    from lrjax import baselines, tasks, training

    task = tasks.get_task(args.task)
    spec = baselines.get_optimizer(args.optimizer)
    start = time.perf_counter()
    data = (
        task.load_data(jax.random.key(args.seed))
        if args.task == "regression_2d"
        else task.load_data(data_dir=args.data_dir, raw_dir=args.raw_dir)
    )
    print(
        f"{args.task}: data ready in {time.perf_counter() - start:.1f} s "
        f"(backend {jax.default_backend()}, {jax.local_device_count()} device(s))"
    )
    configs = spec.grid([args.lr])[:1]
    start = time.perf_counter()
    result = training.train(
        task,
        spec.make_tx(args.steps),
        jax.random.key(args.seed)[None],
        data,
        args.steps,
        hparams=baselines.stack_configs(configs),
        eval_every=args.eval_every,
        eval_params=spec.eval_params,
        learning_rate_fn=spec.learning_rate,
        progress=f"{args.task} {args.optimizer} lr={args.lr:g}",
    )
    elapsed = time.perf_counter() - start
    acc = lambda x: "" if x != x else f"  accuracy {x:.4f}"  # NaN: the task has no accuracy
    for i, step in enumerate(result.eval_steps):
        print(
            f"step {step:6d}  train loss {result.train_loss[0, step - 1]:.4f}  "
            f"val loss {result.val_loss[0, i]:.4f}{acc(result.val_accuracy[0, i])}"
        )
    print(
        f"final test loss {result.test_loss[0, -1]:.4f}{acc(result.test_accuracy[0, -1])}  "
        f"({args.steps} steps in {elapsed:.1f} s incl. compilation)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
