"""vSGD: SGD with variance-adapted, per-parameter learning rates, as an optax transformation.

What: the element-wise variant ("vSGD-l") of Schaul, Zhang & LeCun's tuning-free SGD. Every
parameter gets its own learning rate, estimated online from running averages of the gradient,
the squared gradient and the curvature, each averaged over an adaptive memory whose length
grows when the gradient is dominated by noise and shrinks when the landscape changes.

Why: it is the classic *non-learned* automatic learning-rate method, so it is the natural
baseline for the learned learning-rate controllers of this library. optax does not ship it.

Curvature estimate. The paper feeds Algorithm 1 with "bbprop", a backpropagated estimate of the
diagonal Hessian that optax's ``update(updates, state, params)`` interface cannot compute. This
module offers two sources of curvature samples ``h_t``:

* ``hessian_diag=`` passed to ``update`` (bbprop, a Gauss-Newton diagonal, a Hutchinson
  estimate, the vSGD-fd finite difference of Schaul & LeCun (2013) computed on the same
  mini-batch, or the exact diagonal of a toy problem): its absolute value is used, and the
  method is then exactly the paper's Algorithm 1.
* Otherwise (the default, needing nothing beyond the usual optax call) a *secant* estimate
  across steps, from the ``params`` argument and the previous gradient and params kept in the
  state::

      h_t = |g_t - g_{t-1}| / |theta_t - theta_{t-1}|

  ``g_t`` and ``g_{t-1}`` come from different mini-batches, so the gradient noise adds about
  ``sqrt(2) * sigma / |theta_t - theta_{t-1}|`` to this sample. That bias grows as the steps
  shrink, and smaller steps follow from larger curvature: a feedback loop that, on a noisy
  quadratic, freezes some coordinates within a few steps (learning rates of 1e-10 and below).
  Therefore, by default (``noise_gate=True``), the secant sample is shrunk towards the current
  average ``h_bar`` with the gain of a scalar Kalman update::

      K_t = s_t / (s_t + 2 * sigma2),  s_t = (h_bar * |theta_t - theta_{t-1}|)**2,
      sigma2 = max(v_bar - g_bar**2, 0),
      h_t = h_bar + K_t * (|g_t - g_{t-1}| / |theta_t - theta_{t-1}| - h_bar)

  where ``s_t`` is the squared gradient change that the current curvature predicts for this
  step and ``2 * sigma2`` the variance that the noise adds to the difference of two gradients
  (``sigma2`` is vSGD's own variance estimate). Without noise (``sigma2 = 0``) this is the
  plain secant; when the step is too small to measure anything under the noise, ``h_bar`` is
  kept. This gate is this module's addition, not part of the papers. On a noisy 10-d diagonal
  quadratic (curvatures 0.5 to 5, noise 0.1 to 1) it reaches the loss of the exact-curvature
  version after 1000 steps, while the plain secant (``noise_gate=False``) ends 40 to 100
  times higher.

Where ``theta`` did not move the secant sample is ``h_bar`` (no information). Every curvature
sample is clipped to ``[eps, 1/eps]``. With bfloat16 params the secant also sees the rounding
of ``theta``; keep float32 params for vSGD.

References:
    T. Schaul, S. Zhang, Y. LeCun. No More Pesky Learning Rates. ICML 2013, arXiv:1206.1106
    (Algorithm 1, vSGD-l).
    T. Schaul, Y. LeCun. Adaptive learning rates and parallelization for stochastic, sparse,
    non-smooth gradients. ICLR 2013, arXiv:1301.3764 (vSGD-fd, finite-difference curvature).
    Authors' reference implementation: github.com/schaul/py-optim, PyOptim/algorithms/vsgd.py.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrjax import _validation

__all__ = ["VSGDState", "vsgd"]


class VSGDState(NamedTuple):
    """State of :func:`vsgd`. Every tree has the structure and dtypes of the params."""

    count: jax.Array  # shape (), int32: number of updates done so far.
    grad_avg: optax.Updates  # g_bar, running average of the gradient.
    sq_grad_avg: optax.Updates  # v_bar, running average of the squared gradient.
    curv_avg: optax.Updates  # h_bar, running average of the (absolute) diagonal curvature.
    memory: optax.Updates  # tau, the adaptive memory size (>= 1).
    prev_grads: optax.Updates  # g_{t-1}, for the secant curvature estimate.
    prev_params: optax.Params  # theta_{t-1}, for the secant curvature estimate.


def _check(check: Any, field: str, value: Any, *args: Any) -> None:
    """Validates ``value`` unless it is an array (possibly traced, hence not checkable)."""
    if not isinstance(value, jax.Array):
        check(field, value, *args)


def _compute_dtype(x: jax.Array) -> jnp.dtype:
    """Computes in at least float32, so that bfloat16 params keep full-precision arithmetic."""
    return jnp.promote_types(x.dtype, jnp.float32)


def _secant_curvature(
    g: jax.Array,
    g_prev: jax.Array,
    p: jax.Array,
    p_prev: jax.Array,
    g_avg: jax.Array,
    v_avg: jax.Array,
    h_avg: jax.Array,
    noise_gate: bool,
) -> jax.Array:
    """Secant curvature sample |g_t - g_{t-1}| / |theta_t - theta_{t-1}|, optionally gated.

    Where theta did not move the sample is ``h_avg`` (no information). With ``noise_gate`` the
    sample is shrunk towards ``h_avg`` by the gain ``K = s / (s + 2 var)``, where
    ``s = (h_avg * |theta_t - theta_{t-1}|)**2`` is the expected squared gradient change and
    ``2 var = 2 (v_avg - g_avg**2)`` the variance the gradient noise adds to it.
    """
    dtype = _compute_dtype(g)
    h_avg = h_avg.astype(dtype)
    dg = jnp.abs(g.astype(dtype) - g_prev.astype(dtype))
    dp = jnp.abs(p.astype(dtype) - p_prev.astype(dtype))
    moved = dp > 0
    h = dg / jnp.where(moved, dp, 1.0)
    if noise_gate:
        noise = 2.0 * jnp.maximum(v_avg.astype(dtype) - jnp.square(g_avg.astype(dtype)), 0.0)
        signal = jnp.square(h_avg * dp)
        total = signal + noise
        gain = jnp.where(total > 0, signal / jnp.where(total > 0, total, 1.0), 1.0)
        h = h_avg + gain * (h - h_avg)
    return jnp.where(moved, h, h_avg)


def _unzip(tree: Any, template: Any, n: int) -> tuple[Any, ...]:
    """Turns a tree (shaped like ``template``) of n-tuples into n trees."""
    outer = jax.tree.structure(template)
    inner = jax.tree.structure((0,) * n)
    return tuple(jax.tree.transpose(outer, inner, tree))


def _moving_average(avg: jax.Array, sample: jax.Array, tau: jax.Array) -> jax.Array:
    """(1 - 1/tau) * avg + (1/tau) * sample, in the compute dtype."""
    dtype = _compute_dtype(avg)
    frac = 1.0 / tau.astype(dtype)
    return (1.0 - frac) * avg.astype(dtype) + frac * sample.astype(dtype)


def _vsgd_leaf(
    g: jax.Array,
    g_avg: jax.Array,
    v_avg: jax.Array,
    h_avg: jax.Array,
    tau: jax.Array,
    h: jax.Array,
    first: jax.Array,
    eps: Any,
    init_scale: Any,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """One step of Algorithm 1 for one leaf: returns (update, g_bar, v_bar, h_bar, tau)."""
    dtype = _compute_dtype(g)
    g32 = g.astype(dtype)
    h = jnp.clip(jnp.abs(h.astype(dtype)), eps, 1.0 / eps)
    g_avg = _moving_average(g_avg, g32, tau)
    v_avg = _moving_average(v_avg, jnp.square(g32), tau)
    h_avg = _moving_average(h_avg, h, tau)
    # Slow start: on the first step (tau == 1, so the averages equal the sample) overestimate
    # v_bar and h_bar by the factor C, which divides the first learning rate by C**2.
    scale = jnp.where(first, jnp.asarray(init_scale, dtype), jnp.asarray(1.0, dtype))
    v_avg = v_avg * scale
    h_avg = h_avg * scale
    ratio = jnp.square(g_avg) / (v_avg + eps)  # g_bar^2 / v_bar, in [0, 1].
    lr = ratio / h_avg
    new_tau = (1.0 - ratio) * tau.astype(dtype) + 1.0
    update = -lr * g32
    return update, g_avg, v_avg, h_avg, new_tau


def vsgd(
    epsilon: float = 1e-8,
    init_scale: float = 2.0,
    init_curvature: float = 1.0,
    noise_gate: bool = True,
) -> optax.GradientTransformationExtraArgs:
    r"""vSGD-l (Schaul, Zhang & LeCun 2013): per-parameter learning rates, no tuning.

    For every parameter element ``i`` and step ``t`` (all operations element-wise), with ``g_t``
    the gradient, ``h_t`` a curvature sample and ``tau`` the memory (Algorithm 1 of the paper)::

        g_bar <- (1 - 1/tau) * g_bar + (1/tau) * g_t
        v_bar <- (1 - 1/tau) * v_bar + (1/tau) * g_t**2
        h_bar <- (1 - 1/tau) * h_bar + (1/tau) * h_t
        eta   <- g_bar**2 / (h_bar * (v_bar + eps))
        tau   <- (1 - g_bar**2 / (v_bar + eps)) * tau + 1
        update = -eta * g_t

    The averages, the learning rate and the memory are updated in this order, before the
    parameter step, as in Algorithm 1.

    Curvature sample ``h_t``: the ``hessian_diag`` extra argument of ``update`` when given
    (absolute value taken, as the paper does with bbprop), otherwise the secant estimate
    ``|g_t - g_{t-1}| / |theta_t - theta_{t-1}|`` from the current and the previous gradient and
    params, by default noise-gated (see the module docstring for the equations and why). Every
    curvature sample is clipped to ``[eps, 1/eps]``.

    Initialisation ("slow start"): vSGD initialises the averages on a few samples before the
    first update and overestimates ``v_bar`` and ``h_bar`` by a factor ``C`` so that the first
    learning rates are small. The authors' reference implementation (py-optim, ``vSGD``) uses
    ``slow_constant = 2`` by default and ``max(1, d/10)`` (``d`` parameters) as its alternative
    setting. Here the first update's own gradient is the one initial sample: ``tau`` starts at
    1 (so the first averages equal that sample), then ``v_bar`` and ``h_bar`` are multiplied by
    ``init_scale = C`` (default 2, as the reference implementation, independent of the model
    size). No secant exists on that first step, so unless ``hessian_diag`` is given the
    curvature sample is ``init_curvature`` (default 1, the lower clip the reference
    implementation applies to its initial curvature samples): the first step is an SGD step
    with learning rate ``g**2 / (C**2 * init_curvature * (g**2 + eps))``, about ``0.25`` by
    default. Raise ``init_curvature`` for stiff problems (curvature well above 1).

    Args:
        epsilon: Small positive constant for numerical safety (denominators and the clipping
            range ``[eps, 1/eps]`` of the curvature samples).
        init_scale: The slow-start overestimation factor ``C >= 1`` of ``v_bar`` and ``h_bar``.
        init_curvature: Curvature sample of the first step when no ``hessian_diag`` is given.
        noise_gate: Whether to shrink the secant curvature samples towards ``h_bar`` according
            to the gradient noise (see the module docstring). ``False`` gives the plain secant.

    Returns:
        An :class:`optax.GradientTransformationExtraArgs`. Its ``update`` needs ``params`` and
        accepts an optional keyword ``hessian_diag`` (a tree like the params). It returns the
        full update (already multiplied by minus the learning rates), like ``optax.sgd``.

    Raises:
        ConfigError: for a non-positive ``epsilon`` or ``init_curvature``, or ``init_scale < 1``.

    Long because it follows optax's pattern: arguments checked once, then ``init_fn`` and
    ``update_fn`` as closures over them.
    """
    _check(_validation.check_positive, "epsilon", epsilon)
    _check(_validation.check_in_range, "init_scale", init_scale, 1.0, float("inf"))
    _check(_validation.check_positive, "init_curvature", init_curvature)

    def init_fn(params: optax.Params) -> VSGDState:
        zeros = optax.tree.zeros_like(params)
        return VSGDState(
            count=jnp.zeros([], jnp.int32),
            grad_avg=zeros,
            sq_grad_avg=zeros,
            curv_avg=zeros,
            memory=optax.tree.ones_like(params),
            prev_grads=zeros,
            prev_params=params,
        )

    def update_fn(
        updates: optax.Updates,
        state: VSGDState,
        params: optax.Params | None = None,
        *,
        hessian_diag: optax.Updates | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, VSGDState]:
        del extra_args
        if params is None:
            raise ValueError(
                "vsgd needs the current params to estimate the curvature: call "
                "update(grads, state, params)."
            )
        first = state.count == 0
        if hessian_diag is None:
            secant = jax.tree.map(
                lambda g, gp, p, pp, ga, va, ha: _secant_curvature(
                    g, gp, p, pp, ga, va, ha, noise_gate
                ),
                updates,
                state.prev_grads,
                params,
                state.prev_params,
                state.grad_avg,
                state.sq_grad_avg,
                state.curv_avg,
            )
            # No secant exists on the first step: use the prior ``init_curvature`` there.
            curvature = jax.tree.map(
                lambda h: jnp.where(first, jnp.asarray(init_curvature, h.dtype), h), secant
            )
        else:
            curvature = hessian_diag

        out = jax.tree.map(
            lambda g, ga, va, ha, tau, h: _vsgd_leaf(
                g, ga, va, ha, tau, h, first, epsilon, init_scale
            ),
            updates,
            state.grad_avg,
            state.sq_grad_avg,
            state.curv_avg,
            state.memory,
            curvature,
        )
        new_updates, g_avg, v_avg, h_avg, tau = _unzip(out, updates, 5)
        new_state = VSGDState(
            count=optax.safe_increment(state.count),
            grad_avg=optax.tree.cast_like(g_avg, state.grad_avg),
            sq_grad_avg=optax.tree.cast_like(v_avg, state.sq_grad_avg),
            curv_avg=optax.tree.cast_like(h_avg, state.curv_avg),
            memory=optax.tree.cast_like(tau, state.memory),
            prev_grads=optax.tree.cast_like(updates, state.prev_grads),
            prev_params=params,
        )
        return optax.tree.cast_like(new_updates, updates), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
