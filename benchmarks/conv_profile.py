"""Where one LeNet-5 (paper A's Fashion-MNIST CNN) SGD step spends its time on this machine, piece
by piece, beside the FLOP peak of the same cores, in one run:

  .venv/bin/python benchmarks/conv_profile.py [--batch 1000] [--impl patches] [--chunk 128]

Each piece is its own jitted function on the step's shapes, timed as the best of 3 rounds of
``--reps`` calls after a warm-up, with XLA's cost analysis for its FLOPs:

* ``peak``: a float32 matmul of 2048 x 2048 by 2048 x 2048 (what two AVX2 cores reach in the
  best case, through the same XLA:CPU dot as the trainee's);
* ``step``: the whole train step (:func:`lrjax.training.train_step`: minibatch gather, loss,
  gradient, SGD update), unchunked and in ``--chunk``-example gradient chunks;
* ``loss`` and ``loss+grad``: the forward pass, and the forward and backward pass, on a
  minibatch already gathered and normalised;
* per block, forward and backward (the gradient with respect to its parameters and, except for
  the first block, to its input, as in the whole network's backward pass): ``conv1`` (5x5 x6
  SAME conv, ReLU, 2x2 pool on 28x28x1), ``conv2`` (5x5 x16 VALID, ReLU, pool on 14x14x6),
  ``dense`` (400 -> 120 -> 84 -> 10 and the softmax cross-entropy);
* inside ``conv1`` and ``conv2``: the convolution alone as the model computes it, the pieces of
  the patches path (the image patches, forward and backward, and their matmul on patches
  already built), and the pooling and ReLU alone.

The pieces overlap (a block contains its patches and matmul), so their times do not add up to
the step's; the fraction column is each piece over the unchunked step. The issue it serves is
"Per-step compute toward the hardware limit" (BENCHMARKS.md records its output).
"""

from __future__ import annotations

import argparse

from conv_step import best_seconds  # the same timing loop (run from benchmarks/)


def timed(fn, *args, reps: int) -> tuple[float, float]:
    """``(best seconds per call, XLA's FLOP count)`` of ``jax.jit(fn)(*args)``."""
    import jax

    jitted = jax.jit(fn)
    flops = (jitted.lower(*args).compile().cost_analysis() or {}).get("flops", float("nan"))
    jax.block_until_ready(jitted(*args))
    return best_seconds(lambda: jitted(*args), reps), flops


def pieces(batch: int, impl: str, chunk: int | None):
    """``{name: (fn, args)}`` of every piece (module docstring) at minibatch ``batch``."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from lrjax import tasks, training
    from lrjax.data import make_dataset
    from lrjax.models.layers import Conv2D, image_patches, max_pool, pool_impl_for

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (max(2 * batch, 2000), 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, len(x)).astype(np.int32)
    data = make_dataset(
        "fashion_mnist", x, y, x[:500], y[:500], validation_size=500,
        normalization="standardize", num_classes=10,
    )  # fmt: skip
    task = tasks.get_task("fashion_cnn", batch_size=batch).with_conv_impl(impl)
    tx = optax.with_extra_args_support(optax.sgd(0.01))
    state = training.init_trainee(task, tx, jax.random.key(0), data)
    step = lambda s, d: training.train_step(task, tx, s, d)[0]
    chunked = task.with_grad_chunk(chunk)
    chunked_step = lambda s, d: training.train_step(chunked, tx, s, d)[0]
    params = state.params
    images, labels = task.minibatch(data, jax.random.key(1))
    images = data.normalize(images)
    loss = lambda p, xb: optax.softmax_cross_entropy_with_integer_labels(
        task.model.apply({"params": p}, xb), labels
    ).mean()
    out = {
        "step": (step, (state, data)),
        f"step, chunks of {chunk}": (chunked_step, (state, data)),
        "loss": (loss, (params, images)),
        "loss+grad": (jax.value_and_grad(loss), (params, images)),
    }
    pool = pool_impl_for(impl)

    def block(features, padding):
        conv = Conv2D(features, 5, padding=padding, impl=impl)
        return lambda p, xb: max_pool(nn.relu(conv.apply({"params": p}, xb)), 2, 2, impl=pool)

    key = jax.random.key(2)
    x1 = images
    c1 = Conv2D(6, 5, padding="SAME", impl=impl)
    p1 = c1.init(key, x1[:1])["params"]
    b1 = block(6, "SAME")
    x2 = b1(p1, x1)
    c2 = Conv2D(16, 5, padding="VALID", impl=impl)
    p2 = c2.init(key, x2[:1])["params"]
    b2 = block(16, "VALID")
    x3 = b2(p2, x2).reshape(batch, -1)
    dense_params = {k: params[k] for k in ("dense1", "dense2", "logits")}

    def dense(p, h):
        for name in ("dense1", "dense2"):
            h = nn.relu(h @ p[name]["kernel"] + p[name]["bias"])
        logits = h @ p["logits"]["kernel"] + p["logits"]["bias"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    total = lambda f: lambda *a: jnp.sum(f(*a))  # a scalar to differentiate a block by
    out["conv1 block fwd+bwd (params)"] = (jax.grad(total(b1)), (p1, x1))
    out["conv2 block fwd+bwd (params, input)"] = (jax.grad(total(b2), (0, 1)), (p2, x2))
    out["dense+loss fwd+bwd (params, input)"] = (jax.grad(dense, (0, 1)), (dense_params, x3))
    for name, xin, c, p, padding in (("conv1", x1, c1, p1, "SAME"), ("conv2", x2, c2, p2, "VALID")):
        conv_only = lambda p, xb, c=c: c.apply({"params": p}, xb)
        out[f"{name} conv fwd"] = (conv_only, (p, xin))
        out[f"{name} conv fwd+bwd"] = (jax.grad(total(conv_only)), (p, xin))
        if impl == "patches":  # the patches path's pieces
            patches = lambda xb, padding=padding: image_patches(xb, (5, 5), (1, 1), padding)
            out[f"{name} patches fwd"] = (patches, (xin,))
            if name != "conv1":  # the first block's input needs no gradient
                vjp = lambda xb, g, patches=patches: jax.vjp(patches, xb)[1](g)[0]
                out[f"{name} patches bwd"] = (vjp, (xin, patches(xin)))
            built = patches(xin)
            kernel = p["kernel"].reshape(-1, p["kernel"].shape[-1])
            out[f"{name} patches matmul fwd"] = (jnp.matmul, (built, kernel))
            out[f"{name} patches matmul fwd+bwd"] = (
                jax.grad(lambda pt, k: jnp.sum(pt @ k), (0, 1)),
                (built, kernel),
            )
        pre = c.apply({"params": p}, xin)
        relu_pool = lambda z: max_pool(nn.relu(z), 2, 2, impl=pool)
        out[f"{name} relu+pool fwd+bwd"] = (jax.grad(total(relu_pool)), (pre,))
    return out


def peak(reps: int) -> float:
    """GFLOP/s of a 2048^3 float32 matmul (best of 3 rounds)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (2048, 2048), jnp.float32)
    seconds, _ = timed(lambda a, b: a @ b, a, a, reps=reps)
    return 2 * 2048**3 / seconds / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--impl", default="patches", choices=("patches", "xla"))
    p.add_argument("--chunk", type=int, default=128, help="gradient chunk of the chunked step")
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args()
    import jax

    print(f"backend {jax.default_backend()}, devices {jax.devices()}")
    top = peak(args.reps)
    print(f"peak: float32 matmul 2048^3: {top:.1f} GFLOP/s")
    print(f"{'piece':42s} {'ms':>8s} {'of step':>8s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'of peak':>8s}")
    step_s = None
    for name, (fn, fn_args) in pieces(args.batch, args.impl, args.chunk).items():
        seconds, flops = timed(fn, *fn_args, reps=args.reps)
        step_s = seconds if step_s is None else step_s
        rate = flops / seconds / 1e9
        print(
            f"{name:42s} {1e3 * seconds:8.2f} {seconds / step_s:8.1%} {flops / 1e9:8.3f} "
            f"{rate:8.2f} {rate / top:8.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
