"""Test params drawn with numpy: jax's random initialisers take seconds to compile on CPU, and
these tests compile enough already."""

import jax
import jax.numpy as jnp
import numpy as np


def numpy_params(init_fn, *args, seed=0, scale=0.5):
    """Params of the shapes ``init_fn(*args)`` returns, drawn from N(0, scale^2) with numpy."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(init_fn, *args)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, scale, s.shape), s.dtype), shapes)
