"""Trainee steps per second: lrjax's engine (vmapped over N trainees, CPU/GPU-aware knobs)
against a plain Python loop that calls a jitted step once per step (one trainee).

  .venv/bin/python benchmarks/trainee_throughput.py [--tasks mnist_cnn,mlp] [--n 1,8,32]
      [--conv-impls patches,xla]   # one row per training convolution, in the same run

The ratio is engine / loop (the loop that does not read the loss, the faster of the two).
Both are measured side by side in one run, after compilation (each timed run is preceded by an
identical warm-up run). Validation/test sets are cut to 100 examples so evaluation does not count.
CIFAR-10 tasks use random CIFAR-shaped data (no offline copy here): the cost is the same.
"""

from __future__ import annotations

import argparse
import json
import time

from lrjax.engine import configure_host_devices  # noqa: E402

configure_host_devices()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from lrjax import tasks, training  # noqa: E402
from lrjax.data import make_dataset  # noqa: E402
from lrjax.engine import EngineConfig, resolve  # noqa: E402

ALL = "mnist_cnn,cifar10_cnn,fashion_cnn,fashion_resnet,cifar10_resnet,mlp,regression_2d"


def load(task):
    if getattr(task, "dataset", None) == "cifar10":  # no offline copy: CIFAR-shaped noise
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (6000, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, 6000).astype(np.int32)
        return make_dataset(
            "cifar10",
            x,
            y,
            x[:1000],
            y[:1000],
            validation_size=1000,
            normalization="mean_subtract",
            num_classes=10,
        )
    return task.load_data(jax.random.key(0))


def python_loop(task, data, steps, read_loss=False):
    """The baseline: one trainee, ``jax.jit(train_step)`` called from Python each step
    (``read_loss``: and the loss read back each step, as a loop that logs it does)."""
    tx = optax.with_extra_args_support(optax.sgd(0.01))
    step = jax.jit(lambda s, d: training.train_step(task, tx, s, d))
    state = training.init_trainee(task, tx, jax.random.key(0), data)
    state = jax.block_until_ready(step(state, data)[0])  # compile
    start = time.perf_counter()
    for _ in range(steps):
        state, (loss, _) = step(state, data)
        if read_loss:
            float(loss)
    jax.block_until_ready(state)
    return steps / (time.perf_counter() - start)


def engine_run(task, data, n, steps, engine):
    keys = jax.random.split(jax.random.key(1), n)
    make_tx = fixed_sgd
    kw = dict(eval_examples=100, engine=engine)
    training.train(task, make_tx, keys, data, steps, **kw)  # compile (cached for the next call)
    start = time.perf_counter()
    training.train(task, make_tx, keys, data, steps, **kw)
    return n * steps / (time.perf_counter() - start)


def fixed_sgd(hp):
    """SGD at LR 0.01: one module-level function, so the engine reuses its compiled programs
    across calls (its runner cache compares ``make_tx`` by identity)."""
    return optax.sgd(0.01)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default=ALL)
    parser.add_argument("--n", default="1,8,32")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed run")
    parser.add_argument(
        "--conv-impls",
        default=None,
        help="comma-separated training convolutions to compare (patches,xla; default: the "
        "engine's choice). Each row is one task and one convolution, timed in the same run",
    )
    parser.add_argument(
        "--task-options",
        default="{}",
        help='JSON overrides per task, e.g. \'{"mlp": {"hidden": [32]}}\'',
    )
    args = parser.parse_args()
    ns = [int(x) for x in args.n.split(",")]
    print(
        f"backend {jax.default_backend()}, {jax.local_device_count()} device(s), "
        f"jax {jax.__version__}"
    )
    print(
        f"{'task':15s} {'engine knobs':38s} {'loop st/s':>9s} {'(+read)':>8s} "
        + " ".join(f"{'N=' + str(n) + ' st/s':>11s} {'ratio':>6s}" for n in ns)
    )
    options = json.loads(args.task_options)
    for name in args.tasks.split(","):
        opts = {k: tuple(v) if isinstance(v, list) else v for k, v in options.get(name, {}).items()}
        task = tasks.get_task(name, **opts)
        if opts:
            print(f"{name} options: {opts}")
        data = load(task)
        if hasattr(data, "subset"):
            data = data.subset(validation=100, test=100)
        steps = args.steps or (40 if task.uses_conv else 1000)
        impls = args.conv_impls.split(",") if args.conv_impls and task.uses_conv else [None]
        for impl in impls:
            config = EngineConfig(conv_impl=impl)
            eng = resolve(config, uses_conv=task.uses_conv, num_steps=steps)
            knobs = (
                f"chunk={eng.chunk_size} unroll={eng.unroll} dev={eng.num_devices} "
                f"{eng.batching}" + (f" {eng.conv_impl}" if task.uses_conv else "")
            )
            loop_task = task.with_conv_impl(eng.conv_impl) if task.uses_conv else task
            loop = python_loop(loop_task, data, min(steps, 200))
            loop_read = python_loop(loop_task, data, min(steps, 200), read_loss=True)
            cells = []
            for n in ns:
                rate = engine_run(task, data, n, steps, config)
                cells.append(f"{rate:11.1f} {rate / loop:5.2f}x")
            row = f"{name:15s} {knobs:38s} {loop:9.1f} {loop_read:8.1f} " + " ".join(cells)
            print(row, flush=True)


if __name__ == "__main__":
    main()
