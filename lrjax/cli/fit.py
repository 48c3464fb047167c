"""``lrjax fit``: train one trainee with a fixed optimizer, or with a learned controller's
learning rate, and report its test metrics.

  lrjax fit --task fashion_mlp --optimizer sgd --lr 0.1 --steps 1000
  lrjax fit --task fashion_cnn --controller mlp_family_adam --optimizer adam --steps 1000

With ``--controller`` (a pretrained name or a saved controller's directory) the update is
``optax.chain(base, scale_by_controller(controller, total_steps=steps))`` as a user writes it,
the base being ``--optimizer``'s direction (sgd, momentum or adam), and the controller starts
at its own LR unless ``--lr`` moves it (its LR bounds move with it); it must read only the
training loss (a loss-only controller such as ``mlp_family_sgd``).
"""

from __future__ import annotations

import time

from lrjax.cli import _common


def add_parser(sub, detailed: bool = False) -> None:
    from lrjax.cli import HelpFormatter

    p = sub.add_parser(
        "fit",
        help="train one trainee with a fixed optimizer",
        description="Train one trainee of a task with a baseline optimizer at a given learning "
        "rate, or with a loss-only controller's learning rate over a base optimizer's direction "
        "(--controller), printing validation metrics along the way and the final test loss and "
        "accuracy.",
        formatter_class=HelpFormatter,
    )
    _common.add_task_option(p, detailed)
    p.add_argument(
        "--optimizer",
        default="sgd",
        choices=_optimizer_names() if detailed else None,
        help="a baseline optimizer (lrjax baselines --help describes them)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate (or LR multiplier); default 0.1, or with --controller its own start",
    )
    p.add_argument(
        "--controller",
        default=None,
        help="a loss-only controller (a pretrained name or a saved directory) that sets the LR "
        "over --optimizer's direction (sgd, momentum or adam)",
    )
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
    if args.lr is not None:
        check_positive("--lr", args.lr)
    task = tasks.get_task(args.task)
    if args.controller is None:
        lr = 0.1 if args.lr is None else args.lr
        spec = baselines.get_optimizer(args.optimizer)
        with _common.flag_names(args, {"learning_rate": "lr"}):
            configs = spec.grid([lr])[:1]
        make_tx, hparams = spec.make_tx(args.steps), baselines.stack_configs(configs)
        eval_params, lr_fn = spec.eval_params, spec.learning_rate
        label = f"{args.optimizer} lr={lr:g}"
    else:
        make_tx, label = _controlled(args)
        hparams, eval_params = None, None
        from lrjax.controller import current_lr as lr_fn
    key = jax.random.key(args.seed)
    data = _common.load_task_data(task, key, args)
    start = time.perf_counter()
    result = training.train(
        task,
        make_tx,
        key[None],
        data,
        args.steps,
        hparams=hparams,
        eval_every=args.eval_every,
        eval_params=eval_params,
        learning_rate_fn=lr_fn,
        progress=f"{args.task} {label}",
    )
    elapsed = time.perf_counter() - start
    acc = lambda x: "" if x != x else f"  accuracy {x:.4f}"  # NaN: the task has no accuracy
    for i, step in enumerate(result.eval_steps):
        print(
            f"step {step:6d}  train loss {result.train_loss[0, step - 1]:.4f}  "
            f"val loss {result.val_loss[0, i]:.4f}{acc(result.val_accuracy[0, i])}"
        )
    if args.controller is not None:
        applied = result.learning_rate[0]
        print(
            f"applied LR: start {applied[0]:.3g}, min {applied.min():.3g}, max "
            f"{applied.max():.3g}, last {applied[-1]:.3g}; skipped {int(result.skipped[0])} "
            f"of {args.steps} steps as not finite"
        )
    print(
        f"final test loss {result.test_loss[0, -1]:.4f}{acc(result.test_accuracy[0, -1])}  "
        f"({args.steps} steps in {elapsed:.1f} s incl. compilation)"
    )
    return 0


def _controlled(args):
    """``(make_tx, label)``: the base direction chained with the controller's scale."""
    import optax

    from lrjax import pretrained, training
    from lrjax._validation import ConfigError
    from lrjax.controller import load_controller, scale_by_controller, scale_by_layer_controller

    if args.optimizer not in training.CONTROLLED_OPTIMIZERS:
        raise ConfigError(
            f"--optimizer={args.optimizer!r} cannot be scaled by a controller: expected one of "
            f"{', '.join(training.CONTROLLED_OPTIMIZERS)}."
        )
    spec = args.controller
    controller = pretrained.load(spec) if spec in pretrained.available() else None
    if controller is None:
        controller = load_controller(spec)
    if args.lr is not None:
        controller = controller.with_initial_lr(args.lr)
    base = {"sgd": optax.identity(), "momentum": optax.trace(decay=0.9)}.get(args.optimizer)
    base = optax.scale_by_adam() if base is None else base
    if controller.config.momentum_control:  # it is the momentum: no other before it
        if args.optimizer != "momentum":
            raise ConfigError(
                f"--optimizer={args.optimizer!r} is not allowed with --controller={spec!r}, "
                "which sets SGD's momentum: expected --optimizer momentum."
            )
        base = optax.identity()
    try:
        if controller.config.layered:  # per layer, or setting the momentum
            scale = scale_by_layer_controller(controller, total_steps=args.steps)
        else:
            scale = scale_by_controller(controller, total_steps=args.steps)
    except ConfigError as e:  # it observes more than the loss (e.g. the model's predictions)
        raise ConfigError(
            f"--controller={spec!r} reads more than the training loss ({e}); lrjax fit takes "
            "loss-only controllers, e.g. mlp_family_sgd or mlp_family_adam."
        ) from e
    tx = optax.chain(base, scale)
    start = controller.config.initial_lr
    return (lambda hp: tx), f"{args.optimizer} x controller {spec} (start {start:g})"
