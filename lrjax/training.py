"""Train a task with any optax transform: one pure step, scanned in chunks, vmapped over trainees.

:func:`train` runs ``N`` trainees (seeds x hyperparameters) for ``num_steps`` steps as one
compiled program per chunk length: ``jit(shard_map(vmap(scan(step))))``, batched as the
execution policy says (:mod:`lrjax.engine`; on CPU, conv trainees use ``lax.map`` in place of
``vmap``). Hyperparameters such
as the learning rate are traced arrays (``make_tx(hparams)`` is called inside the traced
function), so a whole grid x seeds shares one executable and nothing recompiles when a value
changes. Between chunks the host shows a progress bar and evaluates at the chosen steps; inside
a chunk nothing talks to the host.

The learning rate actually applied at each step is read from the optimizer state: any state
field named ``learning_rate`` (``optax.inject_hyperparams``, lrjax's hypergradient optimizers and
controllers); optimizers without one report NaN.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from lrjax import engine as engine_lib
from lrjax._validation import ConfigError, check_positive_int
from lrjax.controller.diagnostics import skipped_steps, warn_if_skipping
from lrjax.tasks import Task

MakeTx = Callable[[Any], optax.GradientTransformation]
EvalParamsFn = Callable[[Any, Any], Any]


@struct.dataclass
class TraineeState:
    """Everything that changes while one trainee trains."""

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Learning curves of ``N`` trainees (numpy arrays; leading axis = trainee).

    Attributes:
      train_loss: [N, T] minibatch training loss at each step (before the update).
      learning_rate: [N, T] learning rate applied at each step (NaN if not readable).
      eval_steps: [E] steps after which validation/test were evaluated (the last is T).
      val_loss, val_accuracy, test_loss, test_accuracy: [N, E] metrics at ``eval_steps``,
        on the first ``eval_examples`` of each split, except the last column: the full splits.
      params: the final trainee params (leading axis N).
      skipped: [N] steps each trainee's optimizer skipped as not finite (its
        ``scale_by_controller``, ``skip_nonfinite`` or ``optax.apply_if_finite``; 0 without
        one): the params stayed put on those steps (:func:`lrjax.controller.skipped_steps`).
    """

    train_loss: np.ndarray
    learning_rate: np.ndarray
    eval_steps: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    params: Any
    skipped: np.ndarray | None = None

    @property
    def num_trainees(self) -> int:
        return self.train_loss.shape[0]

    def select(self, index) -> TrainResult:
        """The result restricted to trainees ``index`` (an int, slice or index array)."""
        pick = lambda x: np.asarray(x)[index] if np.ndim(x) else x
        return TrainResult(
            train_loss=pick(self.train_loss),
            learning_rate=pick(self.learning_rate),
            eval_steps=self.eval_steps,
            val_loss=pick(self.val_loss),
            val_accuracy=pick(self.val_accuracy),
            test_loss=pick(self.test_loss),
            test_accuracy=pick(self.test_accuracy),
            params=jax.tree.map(lambda x: x[index], self.params),
            skipped=None if self.skipped is None else pick(self.skipped),
        )


CONTROLLED_OPTIMIZERS = ("sgd", "momentum", "adam")
"""The base directions a controller's learning rate can scale."""

DEFAULT_LEARNING_RATES = {"sgd": 0.1, "momentum": 0.01, "adam": 1e-3}
"""The one documented starting LR of each base optimizer, where a controller trained across a
task family starts when the user gives none: the usual defaults (Adam's 1e-3; SGD's 0.1 and
heavy-ball momentum 0.9's 0.01, whose effective step ``lr / (1 - 0.9)`` is the same)."""


def controlled_optimizer(name: str, lr: jax.Array) -> optax.GradientTransformationExtraArgs:
    """``chain(base, scale(-lr))``: the optimizer ``name`` (:data:`CONTROLLED_OPTIMIZERS`:
    SGD, heavy-ball momentum 0.9, Adam's direction) at the learning rate ``lr``, a traced array
    chosen by a controller (PPO's environment and the actor-critic share it)."""
    base = {
        "sgd": optax.identity(),
        "momentum": optax.trace(decay=0.9),
        "adam": optax.scale_by_adam(),
    }[name]
    return optax.with_extra_args_support(optax.chain(base, optax.scale(-lr)))


def state_field(opt_state: Any, name: str) -> jax.Array:
    """The first field called ``name`` in an optimizer state, as a float32 scalar (NaN if there
    is none).

    Args:
      opt_state: one trainee's optimizer state (any pytree of optax states); searched with
        ``optax.tree_utils.tree_get_all_with_path``, the first match in its order is read.
      name: the field's name, e.g. ``"learning_rate"``. The field must hold one value (it is
        reshaped to ``()``), so the state must not be batched over trainees.

    Returns:
      The field's value as a float32 scalar, or a float32 NaN scalar if no field is called
      ``name``.
    """
    found = optax.tree_utils.tree_get_all_with_path(opt_state, name)
    if not found:
        return jnp.full((), jnp.nan, jnp.float32)
    return jnp.asarray(found[0][1], jnp.float32).reshape(())


def applied_learning_rate(opt_state: Any) -> jax.Array:
    """The learning rate stored in an optimizer state (first field named ``learning_rate``).

    Args:
      opt_state: one trainee's optimizer state, e.g. that of ``optax.inject_hyperparams`` or
        an lrjax controller.

    Returns:
      The LR as a float32 scalar; NaN if the state has no ``learning_rate`` field
      (:func:`state_field`).
    """
    return state_field(opt_state, "learning_rate")


def minibatch_key(state: TraineeState) -> jax.Array:
    """The key of the minibatch the trainee's next :func:`train_step` trains on.

    Args:
      state: the trainee's current state; only its ``key`` is read.

    Returns:
      The second half of ``jax.random.split(state.key)``: the key :func:`train_step` passes to
      ``task.loss_and_grad`` from this state.
    """
    return jax.random.split(state.key)[1]


def train_step(
    task: Task,
    tx: optax.GradientTransformationExtraArgs,
    state: TraineeState,
    data: Any,
    learning_rate_fn: Callable[[Any], jax.Array] = applied_learning_rate,
) -> tuple[TraineeState, tuple[jax.Array, jax.Array]]:
    """One optimizer step on a fresh minibatch: returns the new state, (loss, applied LR).

    The loss is passed to the transform as ``value=`` (reduce-on-plateau and lrjax controllers
    use it; other transforms ignore it).

    Args:
      task: the trainee's task; its ``loss_and_grad(params, data, key)`` gives the minibatch
        loss and gradient.
      tx: the optimizer; its ``update`` is called with ``value=loss``, so it must accept extra
        arguments (wrap a plain transform in ``optax.with_extra_args_support``).
      state: the trainee's state before the step.
      data: the task's data pytree (``task.load_data(...)``), from which the minibatch is
        drawn.
      learning_rate_fn: ``opt_state -> applied LR``, called on the optimizer state *after* the
        update; default :func:`applied_learning_rate`.

    Returns:
      ``(new_state, (loss, lr))``: the state with new params, optimizer state and key and
      ``step + 1``; ``loss`` the minibatch loss at the params before the update, ``lr`` what
      ``learning_rate_fn`` reads from the new optimizer state.
    """
    key, batch_key = jax.random.split(state.key)  # batch_key == minibatch_key(state)
    loss, grads = task.loss_and_grad(state.params, data, batch_key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = optax.apply_updates(state.params, updates)
    new = TraineeState(params=params, opt_state=opt_state, key=key, step=state.step + 1)
    return new, (loss, learning_rate_fn(opt_state))


def init_trainee(
    task: Task, tx: optax.GradientTransformation, key: jax.Array, data: Any
) -> TraineeState:
    """A fresh trainee: params from ``task.init``, ``tx``'s state, the key of its minibatches.
    The training engine and the RL environment both start trainees here.

    Args:
      task: the trainee's task; ``task.init(init_key, data)`` gives the initial params.
      tx: the optimizer; ``tx.init(params)`` gives the initial optimizer state.
      key: one PRNG key, split into the params' init key and the key of the run's minibatches.
      data: the task's data pytree (``task.load_data(...)``), passed to ``task.init``.

    Returns:
      The :class:`TraineeState` at step 0 (an int32 scalar).
    """
    init_key, run_key = jax.random.split(key)
    params = task.init(init_key, data)
    return TraineeState(params, tx.init(params), run_key, jnp.zeros((), jnp.int32))


def eval_schedule(num_steps: int, eval_every: int | None) -> list[int]:
    """Steps after which to evaluate: every ``eval_every`` steps, and always after the last.

    Args:
      num_steps: optimizer steps of the run (not validated here: :func:`train` checks it).
      eval_every: evaluate every this many steps, a positive int; None: only after the last
        step.

    Returns:
      The increasing eval steps, ending with ``num_steps``: ``[eval_every, 2 eval_every, ...,
      num_steps]`` (only multiples below ``num_steps``).
    """
    if eval_every is None:
        return [num_steps]
    check_positive_int("eval_every", eval_every)
    points = list(range(eval_every, num_steps, eval_every))
    return points + [num_steps]


def chunk_lengths(num_steps: int, chunk_size: int, eval_points: list[int]) -> list[int]:
    """Split ``num_steps`` into chunks of at most ``chunk_size`` that end at every eval point.

    Args:
      num_steps: optimizer steps of the run. Not read: the chunks cover the steps up to the
        last of ``eval_points``, which :func:`eval_schedule` makes ``num_steps``.
      chunk_size: the most steps one chunk (one compiled scan) may hold.
      eval_points: increasing steps at which a chunk must end (:func:`eval_schedule`).

    Returns:
      The chunks' lengths, in order; they sum to the last eval point.
    """
    lengths, start = [], 0
    for end in eval_points:
        while start < end:
            n = min(chunk_size, end - start)
            lengths.append(n)
            start += n
    return lengths


def train(
    task: Task,
    make_tx: MakeTx,
    keys: jax.Array,
    data: Any,
    num_steps: int,
    *,
    hparams: Any = None,
    eval_every: int | None = None,
    eval_examples: int = 1000,
    eval_params: EvalParamsFn | None = None,
    learning_rate_fn: Callable[[Any], jax.Array] | None = None,
    engine: engine_lib.EngineConfig | None = None,
    progress: bool | str = False,
    progress_group: int = 1,
) -> TrainResult:
    """Train ``N = len(keys)`` trainees of ``task`` for ``num_steps`` steps each.

    Args:
      task: the trainee (see :mod:`lrjax.tasks`).
      make_tx: ``hparams_i -> optax transform``; called inside the traced program with trainee
        ``i``'s hyperparameters (traced arrays), e.g.
        ``lambda hp: optax.sgd(hp["learning_rate"])``.
      keys: [N] PRNG keys: trainee init, minibatch order, and any randomness of the run.
      data: the task's data pytree (``task.load_data(...)``), shared by all trainees.
      num_steps: optimizer steps per trainee.
      hparams: pytree whose leaves have a leading axis N (or None).
      eval_every: evaluate validation and test every this many steps (default: only at the end).
      eval_examples: examples of each split used by intermediate evaluations; the final one
        uses the full splits.
      eval_params: ``(opt_state, params) -> params`` to evaluate (e.g. schedule-free's averaged
        iterate); default: the params themselves.
      learning_rate_fn: ``opt_state -> applied LR`` (default: the state's ``learning_rate``).
      engine: execution knobs (defaults suit the backend, see :mod:`lrjax.engine`).
      progress: show a progress bar over chunks (a string is used as its description); it
        says "compiling" while XLA compiles a chunk.
      progress_group: trainees come in consecutive groups of this many (the seeds of one
        configuration); the bar shows the lowest group-mean training loss (the best
        configuration's, not an average that mixes diverged ones).

    Returns:
      A :class:`TrainResult` with curves for every trainee. A run in which any trainee's
      optimizer skipped more than 1% of its steps as not finite (``TrainResult.skipped``)
      warns with a :class:`lrjax.controller.SkippingWarning`.
    """
    keys = _check_train_args(keys, hparams, num_steps, eval_examples)
    n = keys.shape[0]
    eng = engine_lib.resolve(
        engine,
        uses_conv=task.uses_conv,
        cpu_conv_impl=task.cpu_conv_impl,
        num_steps=num_steps,
        num_items=n,
    )
    points = eval_schedule(num_steps, eval_every)
    lengths = chunk_lengths(num_steps, eng.chunk_size, points)
    runner = _runner(task, make_tx, eng, eval_params, learning_rate_fn)

    # Padded once here (the engine's device rule), so the state stays sharded across chunks.
    batched = engine_lib.pad_items((keys, hparams), n, eng.padded(n))
    if eng.num_devices > 1:
        batched = jax.device_put(batched, eng.item_sharding())
        data = jax.device_put(data, eng.replicated())
    keys_p, hparams_p = batched
    state = runner.init(keys_p, hparams_p, data)

    losses, lrs, evals = [], [], []
    bar = _Progress(progress, num_steps, progress_group)
    done = 0
    for length in lengths:
        bar.start_chunk(compiling=length not in runner.compiled_lengths)
        state, (loss, lr) = runner.chunk(length)(state, hparams_p, data)
        losses.append(loss)
        lrs.append(lr)
        done += length
        bar.end_chunk(length, loss[:n, -1])
        if done in points:
            final = done == num_steps
            evals.append(runner.evaluate(None if final else eval_examples)(state, hparams_p, data))
    bar.close()

    skipped = np.asarray(_skipped(state.opt_state))  # a scalar 0 when nothing skips
    skipped = np.full(n, skipped) if skipped.ndim == 0 else skipped[:n]
    what = progress if isinstance(progress, str) else "training"
    warn_if_skipping(skipped, num_steps, what=what)
    cat = lambda xs: np.concatenate([np.asarray(x) for x in xs], axis=1)[:n]
    ev = {k: np.stack([np.asarray(e[k]) for e in evals], axis=1)[:n] for k in evals[0]}
    return TrainResult(
        train_loss=cat(losses),
        learning_rate=cat(lrs),
        eval_steps=np.asarray(points),
        val_loss=ev["val_loss"],
        val_accuracy=ev["val_accuracy"],
        test_loss=ev["test_loss"],
        test_accuracy=ev["test_accuracy"],
        params=jax.tree.map(lambda x: np.asarray(x)[:n], state.params),
        skipped=skipped,
    )


@jax.jit
def _skipped(opt_state: Any) -> jax.Array:
    """[N] steps skipped as not finite, from the trainees' (batched) optimizer states."""
    return skipped_steps(opt_state)


def _check_train_args(keys, hparams, num_steps: int, eval_examples: int) -> jax.Array:
    check_positive_int("num_steps", num_steps)
    check_positive_int("eval_examples", eval_examples)
    keys = jnp.asarray(keys)
    if keys.ndim != 1:
        raise ConfigError(
            f"keys must be a 1-D array of PRNG keys (one per trainee), got shape "
            f"{keys.shape}; use jax.random.split(key, n)."
        )
    n = keys.shape[0]
    if hparams is not None:
        for path, leaf in jax.tree_util.tree_leaves_with_path(hparams):
            if jnp.shape(leaf)[:1] != (n,):
                raise ConfigError(
                    f"hparams{jax.tree_util.keystr(path)} has shape "
                    f"{jnp.shape(leaf)}; expected a leading axis of {n} (trainees)."
                )
    return keys


def train_one(
    task: Task,
    tx: optax.GradientTransformation,
    key: jax.Array,
    data: Any,
    num_steps: int,
    **kwargs,
) -> TrainResult:
    """:func:`train` for a single trainee and a ready-made transform (results keep the N=1 axis).

    Args:
      task: the trainee (see :mod:`lrjax.tasks`).
      tx: the optimizer, used as it is (``make_tx`` of :func:`train` returns it whatever the
        hyperparameters).
      key: one typed PRNG key (``jax.random.key``), shape ``()``; it becomes ``keys`` of shape
        ``[1]``. A legacy uint32 ``jax.random.PRNGKey`` gives shape ``(1, 2)``, which
        :func:`train` refuses.
      data: the task's data pytree (``task.load_data(...)``).
      num_steps: optimizer steps of the run.
      kwargs: the keyword arguments of :func:`train` (``eval_every``, ``eval_examples``,
        ``eval_params``, ``learning_rate_fn``, ``engine``, ``progress``, ``progress_group``;
        ``hparams`` is accepted but ``tx`` does not read it).

    Returns:
      The :class:`TrainResult`, every array with a leading axis of 1.
    """
    return train(task, lambda _: tx, key[None], data, num_steps, **kwargs)


@functools.lru_cache(maxsize=32)
def _runner(task, make_tx, eng, eval_params, learning_rate_fn) -> _Runner:
    """Runners are cached, so a second :func:`train` with the same task, ``make_tx`` (compared
    by identity or equality), engine and hooks reuses the compiled programs."""
    return _Runner(task, make_tx, eng, eval_params, learning_rate_fn)


class _Runner:
    """Holds the compiled pieces of one :func:`train` call (cached per chunk length)."""

    def __init__(self, task, make_tx, eng, eval_params, learning_rate_fn):
        self.task, self.make_tx, self.eng = task, make_tx, eng
        self.learning_rate_fn = learning_rate_fn or applied_learning_rate
        self.eval_params = eval_params or (lambda opt_state, params: params)
        self._chunks, self._evals = {}, {}
        self.train_task = eng.train_task(task)
        self.init = jax.jit(eng.over_items(self._init_one, 2))

    def _tx(self, hp):
        return optax.with_extra_args_support(self.make_tx(hp))

    def _init_one(self, key, hp, data):
        return init_trainee(self.task, self._tx(hp), key, data)

    @property
    def compiled_lengths(self) -> set[int]:
        return set(self._chunks)

    def chunk(self, length: int):
        if length not in self._chunks:
            unroll = min(self.eng.unroll, length)

            def run(state, hp, data):
                tx = self._tx(hp)
                step = lambda s, _: train_step(self.train_task, tx, s, data, self.learning_rate_fn)
                return jax.lax.scan(step, state, length=length, unroll=unroll)

            self._chunks[length] = jax.jit(self.eng.over_items(run, 2), donate_argnums=0)
        return self._chunks[length]

    def evaluate(self, max_examples: int | None):
        if max_examples not in self._evals:
            task = self.eng.eval_task(self.task)

            def run(state, hp, data):
                params = self.eval_params(state.opt_state, state.params)
                val = task.metrics(params, data, "validation", max_examples)
                test = task.metrics(params, data, "test", max_examples)
                return {
                    "val_loss": val["loss"],
                    "val_accuracy": val["accuracy"],
                    "test_loss": test["loss"],
                    "test_accuracy": test["accuracy"],
                }

            self._evals[max_examples] = jax.jit(self.eng.over_items(run, 2))
        return self._evals[max_examples]


def _best_group_loss(last_loss, group: int) -> float:
    """The lowest mean over consecutive groups of ``group`` trainees (NaN groups skipped)."""
    x = np.asarray(last_loss, np.float64)
    group = group if group >= 1 and x.size % group == 0 else 1
    means = x.reshape(-1, group).mean(axis=1)
    finite = means[np.isfinite(means)]
    return float(finite.min()) if finite.size else float("nan")


class _Progress:
    """The progress bar of :func:`train` (or nothing, when ``progress`` is falsy): "compiling"
    while a chunk length is compiled, then the best group's last training loss."""

    def __init__(self, progress: bool | str, total: int, group: int):
        self.desc = progress if isinstance(progress, str) else "training"
        self.group = group
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.desc, unit="step", leave=False)

    def start_chunk(self, compiling: bool) -> None:
        if self.bar is not None and compiling:
            self.bar.set_description(f"{self.desc}: compiling")

    def end_chunk(self, length: int, last_loss) -> None:
        if self.bar is not None:
            self.bar.set_description(self.desc)
            self.bar.update(length)
            self.bar.set_postfix(best_loss=f"{_best_group_loss(last_loss, self.group):.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
