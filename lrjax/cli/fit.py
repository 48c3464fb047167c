"""``lrjax fit``: train one trainee with a fixed optimizer and report its test metrics."""

from __future__ import annotations

import time

from lrjax.cli import _common


def add_parser(sub, detailed: bool = False) -> None:
    from lrjax.cli import HelpFormatter

    p = sub.add_parser(
        "fit",
        help="train one trainee with a fixed optimizer",
        description="Train one trainee of a task with a baseline optimizer at a given learning "
        "rate, printing validation metrics along the way and the final test loss and accuracy.",
        formatter_class=HelpFormatter,
    )
    _common.add_task_option(p, detailed)
    p.add_argument(
        "--optimizer",
        default="sgd",
        choices=_optimizer_names() if detailed else None,
        help="a baseline optimizer (lrjax baselines --help describes them)",
    )
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (or LR multiplier)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps")
    p.add_argument("--seed", type=int, default=0, help="trainee initialisation and data order")
    p.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    _common.add_data_options(p)


def _optimizer_names() -> list[str]:
    from lrjax.baselines import OPTIMIZERS

    return list(OPTIMIZERS)


def run(args) -> int:
    import jax

    from lrjax import baselines, tasks, training
    from lrjax._validation import check_positive

    _common.check_flags(args, positive=("steps", "eval_every"), non_negative=("seed",))
    check_positive("--lr", args.lr)
    task = tasks.get_task(args.task)
    spec = baselines.get_optimizer(args.optimizer)
    with _common.flag_names(args, {"learning_rate": "lr"}):
        configs = spec.grid([args.lr])[:1]
    key = jax.random.key(args.seed)
    data = _common.load_task_data(task, key, args)
    start = time.perf_counter()
    result = training.train(
        task,
        spec.make_tx(args.steps),
        key[None],
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
