"""Which machine properties change lrjax's numbers? The same 300 SGD steps of two ``fashion_mlp``
trainees run in fresh processes under different XLA:CPU settings; each prints the final
validation losses and a hash of the final params (equal hashes: bit-identical runs).

    .venv/bin/python benchmarks/reproducibility.py

Rows: the default; again (run to run); one core (``taskset -c 0``: XLA's thread pool size);
two host devices; XLA's code limited to AVX2, and to AVX (no FMA). A learned controller's
training (PPO) amplifies any last-digit difference over its updates, so a machine whose
instruction set differs trains a different controller from the same command.
"""

from __future__ import annotations

import os
import subprocess
import sys

RUN = """
import hashlib, jax, numpy as np, optax
from lrjax import tasks, training
task = tasks.get_task("fashion_mlp")
r = training.train(task, lambda hp: optax.sgd(0.1), jax.random.split(jax.random.key(0), 2),
                   task.load_data(), 300)
flat = np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(r.params)])
print(np.asarray(r.val_loss)[:, -1].tolist(), hashlib.sha256(flat.tobytes()).hexdigest()[:16])
"""

SETTINGS = (  # name, XLA_FLAGS, command prefix
    ("default", "", []),
    ("default, again", "", []),
    ("one core (taskset -c 0)", "", ["taskset", "-c", "0"]),
    ("two host devices", "--xla_force_host_platform_device_count=2", []),
    ("max ISA AVX2", "--xla_cpu_max_isa=AVX2", []),
    ("max ISA AVX (no FMA)", "--xla_cpu_max_isa=AVX", []),
)


def main() -> None:
    print("| setting | final validation losses | params hash |\n|---|---|---|")
    for name, flags, prefix in SETTINGS:
        env = {**os.environ, "XLA_FLAGS": flags}
        out = subprocess.run(
            [*prefix, sys.executable, "-c", RUN], env=env, capture_output=True, text=True
        )
        if out.returncode != 0:
            print(f"| {name} | failed: {out.stderr.strip().splitlines()[-1]} | |", flush=True)
            continue
        losses, digest = out.stdout.strip().splitlines()[-1].rsplit(" ", 1)
        print(f"| {name} | {losses} | {digest} |", flush=True)


if __name__ == "__main__":
    main()
