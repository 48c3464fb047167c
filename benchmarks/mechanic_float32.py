"""Why Mechanic stalls on paper B's regression: float32 rounding, checked against float64.

Mechanic (``optax.contrib.mechanize``) moves the weights by ``sum(s) * Delta`` from where they
started, with ``sum(s)`` starting at ``s_init`` = 1e-6. Around Adam 1e-3 its first steps are
~1e-9, below the rounding of float32 weights of magnitude ~3 (spacing ~2.4e-7), so the weights
do not move, ``x - x0`` stays exactly 0, the inner product that grows ``s`` is 0, and ``sum(s)``
stays at ``s_init`` for ever. The same run in float64 learns. This script trains both on
``regression_2d`` (paper B's 2-D linear regression) with the same keys and prints the test loss
and the final ``sum(s)`` of each:

    .venv/bin/python benchmarks/mechanic_float32.py            # ~10 s
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)  # float64 available; float32 runs stay float32

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from lrjax import tasks  # noqa: E402


def train(task, data, dtype, base_lr: float, steps: int) -> tuple[float, float]:
    """Test loss and Mechanic's ``sum(s)`` after ``steps`` minibatch steps in ``dtype``."""
    tx = optax.contrib.mechanize(optax.adam(base_lr))
    params = jax.tree.map(lambda a: a.astype(dtype), task.init(jax.random.key(1), data))
    state = tx.init(params)

    @jax.jit
    def step(params, state, key):
        _, grads = task.loss_and_grad(params, data, key)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for key in jax.random.split(jax.random.key(2), steps):
        params, state = step(params, state, key)
    scale = jnp.sum(optax.tree_utils.tree_get(state, "s"))
    return float(task.metrics(params, data, "test")["loss"]), float(scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--base-lr", type=float, default=1e-3)
    args = parser.parse_args()
    task = tasks.get_task("regression_2d")
    data = task.load_data(jax.random.key(0))
    weights = task.init(jax.random.key(1), data)
    untrained = float(task.metrics(weights, data, "test")["loss"])
    largest = max(float(jnp.abs(w).max()) for w in jax.tree.leaves(weights))
    print(f"regression_2d: untrained test loss {untrained:.4f}, largest |weight| {largest:.2f}")
    for dtype in (jnp.float32, jnp.float64):
        loss, scale = train(task, data, dtype, args.base_lr, args.steps)
        print(
            f"{jnp.dtype(dtype).name}: Mechanic(Adam {args.base_lr:g}), {args.steps} steps: "
            f"test loss {loss:.4f}, sum(s) {scale:.3g} (s_init 1e-06)"
        )


if __name__ == "__main__":
    main()
