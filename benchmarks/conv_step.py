"""One conv trainee's train step on this machine: images/s and FLOP rate against batch size,
for each convolution / pooling implementation, on one device and on two host devices.

  .venv/bin/python benchmarks/conv_step.py [--task fashion_cnn] [--batches 128,256,512,1000]

The issue it answers (BENCHMARKS.md, "Per-step compute"): one lrjax LeNet-5 step at batch 1000
took ~0.22 s against ~0.11 s for torch on the same 2 cores, and images/s fell with the batch.
Rows:

* ``1 dev``: one trainee, one jitted step called from Python (timed over ``--steps`` steps
  after a warm-up), in a process with one host device, so XLA may use both cores for it.
* ``2 dev``: two trainees, one per host device (``shard_map``, the training engine's CPU
  layout for conv trainees), in a process with two host devices; images/s counts both.

``chunks`` is how many pieces the minibatch's gradient is computed in (``--chunks``: at most
that many examples each, ``EngineConfig.grad_chunk``; 1: all at once). ``impl`` is the
convolution (``patches``: image patches + one matmul, with reshape pooling;
``xla``: ``lax.conv_general_dilated`` with ``nn.max_pool``, i.e. flax's stock layers).
The FLOP count is XLA's own cost analysis of the step with the stock convolution (the network's
work, whatever the implementation); GFLOP/s = that / step time.
Each configuration runs in a subprocess of its own, because the host device count is fixed
when jax starts. ``--torch-python PY`` first times the same LeNet-5 step in PyTorch with the
Python ``PY`` (``torch_lenet_step.py``; torch is not an lrjax dependency), torch using all cores.
The first line is the peak these cores reach (a 2048^3 float32 matmul through XLA:CPU); ``of
peak`` is each row's GFLOP/s over it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(
    task_name: str, batch: int, impl: str, devices: int, steps: int, chunk: int | None
) -> dict:
    import jax
    import numpy as np
    import optax

    from lrjax import tasks, training
    from lrjax.data import make_dataset

    task = tasks.get_task(task_name, batch_size=batch).with_conv_impl(impl).with_grad_chunk(chunk)
    rng = np.random.default_rng(0)
    shape = task.input_shape
    x = rng.integers(0, 256, (max(2 * batch, 2000), *shape), dtype=np.uint8)
    y = rng.integers(0, 10, len(x)).astype(np.int32)
    data = make_dataset(
        "fashion_mnist",
        x,
        y,
        x[:500],
        y[:500],
        validation_size=500,
        normalization="standardize",
        num_classes=10,
    )
    tx = optax.with_extra_args_support(optax.sgd(0.01))
    step = lambda s, d: training.train_step(task, tx, s, d)[0]
    keys = jax.random.split(jax.random.key(0), devices)
    states = jax.vmap(lambda k: training.init_trainee(task, tx, k, data))(keys)
    if devices == 1:
        fn = jax.jit(
            lambda s, d: jax.tree.map(lambda v: v[None], step(jax.tree.map(lambda v: v[0], s), d))
        )
    else:
        mesh = jax.sharding.Mesh(jax.devices()[:devices], ("i",))
        P = jax.sharding.PartitionSpec
        per_device = lambda s, d: jax.tree.map(
            lambda v: v[None], step(jax.tree.map(lambda v: v[0], s), d)
        )
        fn = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("i"), P()), out_specs=P("i")))
    # The network's FLOPs: XLA's count for the unchunked step with the stock convolution (the
    # cost analysis counts a loop's body once, and another implementation's count includes its
    # own data movement), so that every row and torch's are rates of the same work.
    whole = task.with_grad_chunk(None).with_conv_impl("xla")
    whole_step = lambda s, d: training.train_step(whole, tx, s, d)[0]
    compiled = jax.jit(whole_step).lower(jax.tree.map(lambda v: v[0], states), data).compile()
    flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))
    states = jax.block_until_ready(fn(states, data))  # compile + warm up
    states = jax.block_until_ready(fn(states, data))

    def advance():
        nonlocal states
        states = fn(states, data)
        return states

    best = best_seconds(advance, steps)
    return {
        "task": task_name,
        "batch": batch,
        "impl": impl,
        "chunk": tasks.grad_chunks(batch, chunk),
        "devices": devices,
        "step_s": best,
        "images_s": devices * batch / best,
        "gflops": devices * flops / best / 1e9,
        "flops_per_step": flops,
    }


def measure_peak(steps: int) -> dict:
    """GFLOP/s of a 2048^3 float32 matmul through XLA:CPU (the best two cores do here)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (2048, 2048), jnp.float32)
    matmul = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(matmul(a, a))
    return {"peak_gflops": 2 * 2048**3 / best_seconds(lambda: matmul(a, a), steps) / 1e9}


def best_seconds(call, steps: int, rounds: int = 3) -> float:
    """Best over ``rounds`` of the mean seconds per ``call()`` over ``steps`` calls (jax's
    asynchronous dispatch waited for at the end of each round)."""
    import jax

    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            out = call()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="fashion_cnn")
    p.add_argument("--batches", default="128,256,512,1000")
    p.add_argument("--impls", default="patches,xla")
    p.add_argument("--devices", default="1,2")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument(
        "--chunks",
        default="none,128",
        help="gradient chunk sizes (EngineConfig.grad_chunk; none: the minibatch at once)",
    )
    p.add_argument(
        "--torch-python",
        default=None,
        help="a Python with torch: also time the same LeNet-5 step in PyTorch (first rows)",
    )
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration, as JSON
    args = p.parse_args()
    if args.one:
        one = json.loads(args.one)
        print(json.dumps(measure_peak(one["steps"]) if "peak" in one else measure(**one)))
        return
    peak = _subprocess({"peak": True, "steps": args.steps}, devices=1)["peak_gflops"]
    print(f"peak: a float32 matmul 2048^3 on these cores: {peak:.1f} GFLOP/s")
    print(
        f"{'task':12s} {'impl':8s} {'chunks':>6s} {'dev':>3s} {'batch':>5s} {'step ms':>8s} "
        f"{'images/s':>9s} {'GFLOP/s':>8s} {'GFLOP/step':>10s} {'of peak':>7s}"
    )
    if args.torch_python:
        _torch_rows(args.torch_python, args.batches, args.steps, args.task, peak)
    chunks = [None if c == "none" else int(c) for c in args.chunks.split(",")]
    for devices in map(int, args.devices.split(",")):
        for impl in args.impls.split(","):
            for chunk in chunks:
                for batch in map(int, args.batches.split(",")):
                    _row(args.task, batch, impl, devices, args.steps, chunk, peak)


def _torch_rows(python: str, batches: str, steps: int, task: str, peak: float) -> None:
    """The PyTorch peer (``torch_lenet_step.py``) in the same run, with ``python``; its GFLOP/s
    counts the FLOPs XLA counts for the same network and batch (the stock ``xla`` step)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_lenet_step.py")
    out = subprocess.run(
        [python, script, "--batches", batches, "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in out.stdout.splitlines():
        r = json.loads(line)
        one = dict(task_name=task, batch=r["batch"], impl="xla", devices=1, steps=1, chunk=None)
        flops = _subprocess(one, devices=1)["flops_per_step"]
        rate = flops / r["step_s"] / 1e9
        name = f"torch {r['torch'].split('+')[0]}"
        print(
            f"{task:12s} {name:8s} {1:6d} {'all':>3s} {r['batch']:5d} "
            f"{1e3 * r['step_s']:8.1f} {r['images_s']:9.0f} {rate:8.2f} {flops / 1e9:10.3f} "
            f"{rate / peak:7.1%}",
            flush=True,
        )


def _subprocess(one: dict, devices: int) -> dict:
    """``--one`` in a process of its own with ``devices`` host devices (fixed at jax's start)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    )
    out = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(one)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _row(task_name, batch, impl, devices, steps, chunk, peak) -> None:
    one = dict(
        task_name=task_name, batch=batch, impl=impl, devices=devices, steps=steps, chunk=chunk
    )
    r = _subprocess(one, devices)
    print(
        f"{r['task']:12s} {impl:8s} {r['chunk']:6d} {devices:3d} {batch:5d} "
        f"{1e3 * r['step_s']:8.1f} {r['images_s']:9.0f} {r['gflops']:8.2f} "
        f"{r['flops_per_step'] / 1e9:10.3f} {r['gflops'] / peak:7.1%}",
        flush=True,
    )


if __name__ == "__main__":
    main()
