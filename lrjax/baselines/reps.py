"""Daniel et al. 2016, paper B's other RL baseline: a step-size controller over hand-designed
features, its parameters learned with Relative Entropy Policy Search (REPS).

"Learning Step Size Controllers for Robust Neural Network Training" (Daniel, Taylor, Nowozin,
AAAI 2016) controls SGD's learning rate from two features of the minibatch, smoothed over
steps, with a linear policy whose parameters an episodic REPS learns over training runs.

What is implemented (written here: no library has it):

- Features, per step, on the minibatch ``x_1..x_B`` the step trains on, from the loss of each
  example (:func:`example_losses`: the task kinds it is computed for are image classification
  and paper B's 2-D regression):

  * *predictive change in function value*: ``log Var_i(-lr grad f_i(w) . g)``, the spread
    over examples of the first-order change of each example's loss that the update
    ``-lr g`` (``g`` the minibatch gradient) predicts; computed exactly with one
    forward-mode product of the per-example losses along ``g``;
  * *disagreement of function values*: ``log Var_i(f_i(w))``.

  Each is smoothed with an exponential moving average (``smoothing``) and taken relative to
  its value at the run's first step, so the same parameters suit any task's scale.
- Policy: every ``act_every`` steps,
  ``log lr <- clip(log lr + clip(theta . [phi_pred, phi_dis, 1], -max_change, max_change))``,
  within ``[lr_min, lr_max]``.
- REPS (Peters, Muelling, Altun 2010; episodic, no context): a Gaussian
  ``N(mu, diag sigma^2)`` over ``theta``; each iteration runs ``samples`` training episodes
  (one compiled program), scores each by its final validation loss (``R = -L_val``), weights
  them by ``exp(R / eta)`` with ``eta`` minimising the dual
  ``g(eta) = eta epsilon + eta log mean exp(R / eta)`` (a KL bound ``epsilon`` between
  successive search distributions) and refits ``mu`` and ``sigma`` to the weighted samples.

Simplified against the paper: two features (the paper also tries variants and uses more
state, e.g. of RMSprop); a diagonal search distribution; episodes of the task being solved
rather than a separate family of training problems; the return is the final validation loss
rather than a sum over the run.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lrjax import engine as engine_lib
from lrjax import training
from lrjax._validation import (
    ConfigError,
    check_in_range,
    check_less,
    check_positive,
    check_positive_int,
)
from lrjax.tasks import ImageClassificationTask, Regression2DTask, Task

THETA_SIZE = 3  # [predictive change, disagreement, bias]


@dataclasses.dataclass(frozen=True)
class DanielConfig:
    """The controller (see the module doc).

    Attributes:
      initial_lr: the LR a run starts at. Default 0.01 (paper B's actor starts there too).
      lr_min / lr_max: the LR's range. Default [1e-4, 1], paper B's grid.
      act_every: steps between LR changes. Default 10.
      smoothing: the features' moving-average momentum, in [0, 1). Default 0.9.
      max_change: bound on one change of log LR (a factor e^0.5 = 1.65). Default 0.5.
    """

    initial_lr: float = 0.01
    lr_min: float = 1e-4
    lr_max: float = 1.0
    act_every: int = 10
    smoothing: float = 0.9
    max_change: float = 0.5

    def __post_init__(self):
        check_positive("lr_min", self.lr_min)
        check_positive("lr_max", self.lr_max)
        check_less("lr_min", self.lr_min, "lr_max", self.lr_max)
        check_in_range("initial_lr", self.initial_lr, self.lr_min, self.lr_max)
        check_positive_int("act_every", self.act_every)
        check_in_range("smoothing", self.smoothing, 0.0, 1.0, high_open=True)
        check_positive("max_change", self.max_change)


@dataclasses.dataclass(frozen=True)
class REPSConfig:
    """Episodic REPS over the controller's parameters.

    Attributes:
      iterations: search-distribution updates. Default 8.
      samples: episodes (parameter samples) per iteration. Default 8.
      episode_steps: SGD steps per episode. Default 300.
      epsilon: KL bound between successive search distributions. Default 1.0.
      init_std: initial standard deviation of every parameter. Default 0.5.
      min_std: floor of the standard deviations (keeps exploring). Default 0.02.
      eval_examples: validation examples of an episode's score. Default 1000.
    """

    iterations: int = 8
    samples: int = 8
    episode_steps: int = 300
    epsilon: float = 1.0
    init_std: float = 0.5
    min_std: float = 0.02
    eval_examples: int = 1000

    def __post_init__(self):
        for f in ("iterations", "samples", "episode_steps", "eval_examples"):
            check_positive_int(f, getattr(self, f))
        if self.samples < 2:
            raise ConfigError(f"samples={self.samples} is not allowed: expected at least 2.")
        check_positive("epsilon", self.epsilon)
        check_positive("init_std", self.init_std)
        check_positive("min_std", self.min_std)


@struct.dataclass
class EpisodeState:
    trainee: training.TraineeState
    log_lr: jax.Array
    features: jax.Array  # smoothed, [2]
    first: jax.Array  # the run's first smoothed features, [2]


SUPPORTED_TASKS = (ImageClassificationTask, Regression2DTask)
"""The task kinds whose per-example losses :func:`example_losses` computes."""


def check_supported(task: Task) -> None:
    """Refuse, before anything compiles, a task whose per-example losses are not computed here
    (any other kind, a wrapper such as a fault-injecting task included: the losses are read
    from the task's own minibatch, which a wrapper's faults would not reach)."""
    if not isinstance(task, SUPPORTED_TASKS):
        raise ConfigError(
            f"task={getattr(task, 'name', task)!r} ({type(task).__name__}) is not allowed: "
            "Daniel et al.'s controller observes the loss of each example, computed for "
            "image classification tasks and regression_2d; expected one of those."
        )


def example_losses(task: Task, params, data, key: jax.Array) -> jax.Array:
    """The loss of each example of the minibatch ``task.loss`` draws with ``key``,
    ``[batch_size]`` (their mean is ``task.loss``): the ``f_i`` of the features.

    They are computed here, beside the one observer that needs them, from the examples the
    task draws (``task.minibatch``) and the loss that defines its kind: the cross-entropy of
    each example's logits for an image classifier, half the squared error for paper B's
    regression.

    Raises:
      ConfigError: for another kind of task (:func:`check_supported`).
    """
    check_supported(task)
    inputs, targets = task.minibatch(data, key)
    if isinstance(task, ImageClassificationTask):
        logits = task.logits(params, data, inputs)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return 0.5 * (inputs @ params["kernel"] - targets) ** 2


def features(task: Task, params, data, key, lr) -> tuple[jax.Array, jax.Array, Any]:
    """``(raw features [2], minibatch loss, minibatch gradient)`` at ``params`` on the
    minibatch drawn with ``key``, for an SGD step at ``lr`` (see the module doc)."""
    losses_fn = lambda p: example_losses(task, p, data, key)
    losses, vjp = jax.vjp(losses_fn, params)
    grads = vjp(jnp.full_like(losses, 1.0 / losses.shape[0]))[0]
    _, along = jax.jvp(losses_fn, (params,), (grads,))  # grad f_i . g for every example
    predicted = -lr * along
    tiny = jnp.float32(1e-30)
    raw = jnp.log(jnp.stack([jnp.var(predicted), jnp.var(losses)]) + tiny)
    return raw, losses.mean(), grads


def init_episode(task: Task, config: DanielConfig, key, data) -> EpisodeState:
    tx = _sgd(jnp.float32(config.initial_lr))
    return EpisodeState(
        trainee=training.init_trainee(task, tx, key, data),
        log_lr=jnp.log(jnp.float32(config.initial_lr)),
        features=jnp.zeros((2,), jnp.float32),
        first=jnp.zeros((2,), jnp.float32),
    )


def _sgd(lr):
    return optax.sgd(lr)


def step(task: Task, config: DanielConfig, theta, state: EpisodeState, data):
    """One controlled SGD step: observe, maybe change the LR, update. Returns the new state
    and ``(loss, lr)`` of the step."""
    trainee = state.trainee
    key, batch = jax.random.split(trainee.key)
    lr = jnp.exp(state.log_lr)
    raw, loss, grads = features(task, trainee.params, data, batch, lr)
    raw = jnp.where(jnp.isfinite(raw), raw, state.features)
    first_step = trainee.step == 0
    smoothed = jnp.where(
        first_step, raw, config.smoothing * state.features + (1 - config.smoothing) * raw
    )
    first = jnp.where(first_step, smoothed, state.first)
    act = (trainee.step > 0) & (trainee.step % config.act_every == 0)
    x = jnp.concatenate([smoothed - first, jnp.ones((1,), jnp.float32)])
    change = jnp.clip(jnp.dot(theta, x), -config.max_change, config.max_change)
    log_lr = jnp.where(act, state.log_lr + change, state.log_lr)
    log_lr = jnp.clip(log_lr, math.log(config.lr_min), math.log(config.lr_max))
    lr = jnp.exp(log_lr)
    params = jax.tree.map(lambda p, g: p - lr * g, trainee.params, grads)
    new = training.TraineeState(params, trainee.opt_state, key, trainee.step + 1)
    return EpisodeState(new, log_lr, smoothed, first), (loss, lr)


def run_episodes(
    task: Task,
    config: DanielConfig,
    thetas: jax.Array,
    keys: jax.Array,
    data: Any,
    num_steps: int,
    *,
    eval_every: int | None = None,
    eval_examples: int = 1000,
    engine: engine_lib.EngineConfig | None = None,
) -> dict[str, np.ndarray]:
    """Train one trainee per ``(theta, key)`` pair for ``num_steps`` controlled steps, as one
    compiled program batched as the engine says.

    Returns numpy arrays: ``train_loss`` and ``learning_rate`` ``[N, T]``; ``eval_steps``
    ``[E]`` and ``val_loss``, ``test_loss``, ``test_accuracy`` ``[N, E]`` on the first
    ``eval_examples`` of each split, the last column on the full splits.
    """
    check_positive_int("num_steps", num_steps)
    check_supported(task)
    points = training.eval_schedule(num_steps, eval_every)
    eng = engine_lib.resolve(
        engine,
        uses_conv=task.uses_conv,
        cpu_conv_impl=task.cpu_conv_impl,
        num_steps=num_steps,
        num_items=len(keys),
    )
    train_task, eval_task = eng.train_task(task), eng.eval_task(task)
    starts = [0, *points]
    lengths = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]

    def one(theta, key, d):
        state = init_episode(train_task, config, key, d)
        losses, lrs, evals = [], [], []
        for i, length in enumerate(lengths):
            state, (loss, lr) = jax.lax.scan(
                lambda s, _: step(train_task, config, theta, s, d),
                state,
                None,
                length=length,
                unroll=min(eng.unroll, length),
            )
            losses.append(loss)
            lrs.append(lr)
            n = None if i == len(lengths) - 1 else eval_examples
            params = state.trainee.params
            val = eval_task.metrics(params, d, "validation", n)
            test = eval_task.metrics(params, d, "test", n)
            evals.append(jnp.stack([val["loss"], test["loss"], test["accuracy"]]))
        return jnp.concatenate(losses), jnp.concatenate(lrs), jnp.stack(evals, axis=1)

    run = jax.jit(eng.over_items(one, 2))
    loss, lr, ev = (np.asarray(x) for x in run(jnp.asarray(thetas, jnp.float32), keys, data))
    return {
        "train_loss": loss,
        "learning_rate": lr,
        "eval_steps": np.asarray(points),
        "val_loss": ev[:, 0],
        "test_loss": ev[:, 1],
        "test_accuracy": ev[:, 2],
    }


def reps_weights(returns: np.ndarray, epsilon: float) -> tuple[np.ndarray, float]:
    """REPS's sample weights ``exp(R_i / eta) / sum`` and ``eta``, the minimiser of the dual
    ``g(eta) = eta epsilon + eta log mean_i exp((R_i - max R) / eta)`` (which bounds the KL
    divergence of the reweighted samples from the current distribution by ``epsilon``)."""
    from scipy.optimize import minimize_scalar

    r = np.asarray(returns, np.float64)
    r = r - r.max()
    scale = max(float(np.std(r)), 1e-12)

    def dual(log_eta):
        eta = math.exp(log_eta) * scale
        return eta * epsilon + eta * math.log(np.mean(np.exp(r / eta)))

    log_eta = minimize_scalar(dual, bounds=(-12.0, 12.0), method="bounded").x
    eta = math.exp(log_eta) * scale
    w = np.exp(r / eta)
    return w / w.sum(), eta


@dataclasses.dataclass(frozen=True)
class REPSResult:
    """A trained controller's search distribution and the history of its training.

    Attributes:
      mean: the final ``mu`` (the controller deployed: ``theta = mean``).
      std: the final ``sigma``.
      history: per iteration, the mean, best and worst episode return and ``eta``.
    """

    mean: np.ndarray
    std: np.ndarray
    history: list[dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "history": self.history}


def train_reps(
    task: Task,
    data: Any,
    key: jax.Array,
    config: DanielConfig = DanielConfig(),
    reps: REPSConfig = REPSConfig(),
    *,
    engine: engine_lib.EngineConfig | None = None,
    progress: bool = False,
) -> REPSResult:
    """Learn the controller's parameters with episodic REPS on ``task`` (see the module doc).
    Episodes of one iteration are one compiled program; the search distribution is updated on
    the host (a handful of numbers)."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()[-1].item())
    mean = np.zeros(THETA_SIZE)
    std = np.full(THETA_SIZE, reps.init_std)
    history = []
    for it in range(reps.iterations):
        thetas = mean + std * rng.standard_normal((reps.samples, THETA_SIZE))
        keys = jax.random.split(jax.random.fold_in(key, it), reps.samples)
        out = run_episodes(
            task,
            config,
            thetas,
            keys,
            data,
            reps.episode_steps,
            eval_examples=reps.eval_examples,
            engine=engine,
        )
        val = out["val_loss"][:, -1]
        finite = np.isfinite(val)
        worst = np.max(val[finite]) + 1.0 if finite.any() else 1.0
        returns = -np.where(finite, val, worst)
        w, eta = reps_weights(returns, reps.epsilon)
        mean = w @ thetas
        std = np.maximum(np.sqrt(w @ np.square(thetas - mean)), reps.min_std)
        row = {
            "iteration": it + 1,
            "return_mean": float(returns.mean()),
            "return_best": float(returns.max()),
            "return_worst": float(returns.min()),
            "eta": float(eta),
        }
        history.append(row)
        if progress:
            print(
                f"REPS iteration {it + 1}/{reps.iterations}: final validation loss best "
                f"{-row['return_best']:.4f}, mean {-row['return_mean']:.4f}",
                flush=True,
            )
    return REPSResult(mean=mean, std=std, history=history)
