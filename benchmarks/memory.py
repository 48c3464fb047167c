"""Memory of one PPO update against the number of episodes N, on an MLP and a CNN trainee.

  .venv/bin/python benchmarks/memory.py [--tasks fashion_mlp,fashion_cnn] [--n 1,8,32,128,512]

For each task and N, in a fresh subprocess (so that peaks do not mix):

* ``XLA GiB``: the compiled update's own buffers from XLA's memory analysis (arguments +
  outputs + temporaries, aliased buffers counted once): what the program needs on its device(s),
  without running it (so every N is measured, however slow a run would be);
* ``per episode MiB``: the growth of that figure per episode between the last two N;
* ``peak RSS GiB``: the process's peak resident memory after running the update once (data,
  compilation and the Python runtime included), only for N <= ``--run-max`` (a CNN update at
  N = 512 takes tens of minutes here).

The settings are those of ``lrjax train`` (the lrjax controller preset, horizon 40, 10 steps per
action, reward ``loss_decrement``, episodes over the host devices); 24 GiB is this machine, 80 GiB
an A100/H100's memory. The largest N that fits is extrapolated linearly from the per-episode
growth. The CPU layout runs conv trainees one after another, so its memory hardly grows with N;
``--gpu-layout`` compiles (on this CPU) the program a GPU runs by default, every episode vmapped
with XLA's convolutions, whose buffers are what an accelerator's memory must hold.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

GIB = 2**30


def measure(task_name: str, n: int, run: bool, horizon: int, gpu_layout: bool = False) -> dict:
    import jax

    from lrjax import tasks
    from lrjax.algos import runner
    from lrjax.algos.ppo import PPO, PPOConfig
    from lrjax.controller import ControllerConfig
    from lrjax.engine import EngineConfig
    from lrjax.env import EnvConfig, TraineeEnv

    task = tasks.get_task(task_name)
    data = task.load_data(jax.random.key(0))
    engine = EngineConfig(shard_vmapped=True)  # as lrjax train
    if gpu_layout:  # the GPU defaults: vmapped, XLA's convolutions, whole minibatches, 1 device
        engine = EngineConfig(
            batching="vmap", conv_impl="xla", eval_conv_impl="xla", grad_chunk=10**6, devices=1
        )
    env = TraineeEnv(
        task,
        EnvConfig(
            controller=ControllerConfig.lrjax(),
            horizon=horizon,
            reward="loss_decrement",
            engine=engine,
        ),
    )
    ppo = PPO(env, PPOConfig(num_envs=n, num_updates=1, num_minibatches=2 if n > 1 else 1))
    state = jax.jit(ppo.init)(jax.random.key(0), data)
    compiled = runner.compile_chunk(ppo, 1, state).lower(state, data).compile()
    mem = compiled.memory_analysis()
    xla = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    peak = None
    if run:
        jax.block_until_ready(compiled(state, data))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "xla": xla,
        "temp": mem.temp_size_in_bytes,
        "arguments": mem.argument_size_in_bytes,
        "peak_rss": peak,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="fashion_mlp,fashion_cnn")
    p.add_argument("--n", default="1,8,32,128,512")
    p.add_argument("--run-max", default="fashion_mlp=128,fashion_cnn=8")
    p.add_argument("--horizon", type=int, default=40)
    p.add_argument(
        "--gpu-layout",
        action="store_true",
        help="compile with the GPU defaults (vmapped episodes, XLA convolutions, one device) "
        "to estimate an accelerator's needs; nothing is run",
    )
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: one configuration, as JSON
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return
    run_max = dict(item.split("=") for item in args.run_max.split(","))
    print(
        f"{'task':12s} {'N':>5s} {'XLA GiB':>8s} {'temp GiB':>9s} {'per episode MiB':>16s} "
        f"{'peak RSS GiB':>13s}"
    )
    for task in args.tasks.split(","):
        previous = None
        for n in map(int, args.n.split(",")):
            run = n <= int(run_max.get(task, 0)) and not args.gpu_layout
            one = dict(task_name=task, n=n, run=run, horizon=args.horizon)
            one["gpu_layout"] = args.gpu_layout
            out = subprocess.run(
                [sys.executable, __file__, "--one", json.dumps(one)],
                env=dict(os.environ),
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            per = (
                ""
                if previous is None
                else f"{(r['xla'] - previous[1]) / (n - previous[0]) / 2**20:.2f}"
            )
            peak = "not run" if r["peak_rss"] is None else f"{r['peak_rss'] / GIB:.2f}"
            print(
                f"{task:12s} {n:5d} {r['xla'] / GIB:8.3f} {r['temp'] / GIB:9.3f} {per:>16s} "
                f"{peak:>13s}",
                flush=True,
            )
            previous = (n, r["xla"])
        if previous is not None and per:
            bytes_per = float(per) * 2**20
            base = previous[1] - previous[0] * bytes_per
            fits = [int((budget * GIB - base) / bytes_per) for budget in (24, 80)]
            print(f"{task}: fits N <= {fits[0]:,} in 24 GiB, N <= {fits[1]:,} in 80 GiB (linear)")


if __name__ == "__main__":
    main()
