"""Backend-aware execution knobs: how many trainee steps one compiled call runs, how much of the
scan is unrolled, and over how many devices the vmapped trainees are sharded.

Why knobs at all (measured on the project's 2-core CPU, see ``../shared/DESIGN.md`` and
``BENCHMARKS.md``): XLA:CPU runs convolutions inside a rolled ``while`` loop several times slower
than the same step called from Python (jax issue 12868), so on CPU a conv trainee runs short,
fully unrolled scan chunks; a dense trainee (MLP, 2-D regression) is the opposite case and wants
long rolled scans. Vmapped convolutions become grouped convolutions, also slow on XLA:CPU, so there
the trainees of a conv task run one after another (``lax.map``), each with plain convolutions
(``BENCHMARKS.md``). XLA:CPU also uses about one core per program, so the trainees are
split over host devices with ``shard_map`` (set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before jax starts:
:func:`configure_host_devices`). On GPU/TPU long rolled scans and wide vmaps are fast.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import jax
from jax.sharding import NamedSharding, PartitionSpec

from lrjax._validation import check_choice, check_positive_int

TRAINEE_AXIS = "trainees"
BATCHINGS = ("vmap", "map")


def configure_host_devices(count: int | None = None) -> None:
    """Ask XLA for ``count`` host (CPU) devices (default: the number of cores).

    Must run before jax initialises its backends (before the first computation); it does
    nothing if ``XLA_FLAGS`` already sets a device count. Only affects the CPU backend.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags:
        return
    count = count or os.cpu_count() or 1
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def default_batching(uses_conv: bool, backend: str | None = None) -> str:
    """How trainees (or RL episodes) that share a device are batched by default: ``"map"``
    (one after another) for conv trainees on CPU, whose vmapped convolutions become grouped
    convolutions that XLA:CPU runs slowly; ``"vmap"`` everywhere else."""
    backend = backend or jax.default_backend()
    return "map" if backend == "cpu" and uses_conv else "vmap"


def evaluation_task(task, batching: str):
    """The task as used for forward-only evaluation of trainees batched by ``batching``.

    When trainees run one after another (``"map"``) nothing is vmapped, so XLA's own
    convolution is not turned into a grouped one; forward-only, it is faster on XLA:CPU than
    the image-patches convolution training uses there (3.2x on the MNIST CNN's validation
    minibatch and probe; ``BENCHMARKS.md``). Same parameters, same outputs.
    """
    return task.with_conv_impl("xla") if batching == "map" else task


def batch_over(fn: Callable, batching: str, num_batched_args: int) -> Callable:
    """``fn`` over the leading axis of its first ``num_batched_args`` arguments (later arguments
    are shared), by ``jax.vmap`` or, for ``batching="map"``, by ``lax.map`` with ``vmap``'s
    semantics: outputs stacked along a new leading axis either way."""
    check_choice("batching", batching, BATCHINGS)
    if batching == "map":
        return functools.partial(_map_trainees, fn, num_batched_args)

    def run(*args):
        n_rest = len(args) - num_batched_args
        return jax.vmap(fn, in_axes=(0,) * num_batched_args + (None,) * n_rest)(*args)

    return run


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Execution knobs; ``None`` picks the backend-aware default (see :func:`resolve`).

    Attributes:
      chunk_size: trainee steps per compiled call; the host shows progress between chunks.
      unroll: ``lax.scan`` unroll factor inside a chunk (``chunk_size`` = fully unrolled).
      devices: number of devices the trainees are sharded over (1 = a single program on one
        device). The trainee count is padded up to a multiple of it.
      batching: how the trainees on one device are batched: ``"vmap"`` (batched operations)
        or ``"map"`` (``lax.map``: one trainee after another, each with un-batched operations).
    """

    chunk_size: int | None = None
    unroll: int | None = None
    devices: int | None = None
    batching: str | None = None

    def __post_init__(self):
        for f in ("chunk_size", "unroll", "devices"):
            value = getattr(self, f)
            if value is not None:
                check_positive_int(f, value)
        if self.batching is not None:
            check_choice("batching", self.batching, BATCHINGS)


@dataclasses.dataclass(frozen=True)
class ResolvedEngine:
    chunk_size: int
    unroll: int
    devices: tuple[jax.Device, ...]
    batching: str

    @property
    def num_devices(self) -> int:
        return len(self.devices)


def resolve(
    config: EngineConfig,
    *,
    uses_conv: bool,
    num_steps: int,
    num_trainees: int | None = None,
    backend: str | None = None,
) -> ResolvedEngine:
    """Concrete knobs for a run of ``num_steps`` steps of a (conv or dense) trainee.

    Defaults:
      - CPU, conv trainee: chunks of 10 fully unrolled steps, trainees mapped one after another
        on each device, over all host devices.
      - CPU, dense trainee: rolled chunks of 500 steps (unroll 4), vmapped, over all host
        devices.
      - GPU/TPU: rolled chunks of 1,000 steps, over all local devices.
    Never more devices than trainees.
    """
    backend = backend or jax.default_backend()
    if backend == "cpu" and uses_conv:
        chunk, unroll = 10, None
    elif backend == "cpu":
        chunk, unroll = 500, 4
    else:
        chunk, unroll = 1000, 1
    batching = default_batching(uses_conv, backend)
    chunk = min(config.chunk_size or chunk, num_steps)
    unroll = config.unroll or unroll or chunk
    local = jax.local_devices(backend=backend)
    n_dev = min(config.devices or len(local), len(local), num_trainees or len(local))
    return ResolvedEngine(
        chunk_size=chunk,
        unroll=min(unroll, chunk),
        devices=tuple(local[:n_dev]),
        batching=config.batching or batching,
    )


def shard_trainees(fn: Callable, engine: ResolvedEngine, num_batched_args: int) -> Callable:
    """``vmap(fn)`` over the leading (trainee) axis of its first ``num_batched_args`` arguments,
    sharded over ``engine.devices`` with ``shard_map``; later arguments are replicated.

    Every output has the trainee axis first. The caller pads the trainee count to a multiple of
    the device count (:func:`pad_trainees`).
    """

    return shard_over(fn, engine.batching, engine.devices, num_batched_args)


def shard_over(
    fn: Callable, batching: str, devices: tuple[jax.Device, ...], num_batched_args: int
) -> Callable:
    """:func:`batch_over` on each of ``devices``, the batch split evenly over them with
    ``shard_map`` (a single device: no ``shard_map``). The batch size must be a multiple of
    the device count."""
    batched = batch_over(fn, batching, num_batched_args)
    if len(devices) == 1:
        return batched
    mesh = _mesh(devices)

    def run(*args):
        n_rest = len(args) - num_batched_args
        in_specs = (PartitionSpec(TRAINEE_AXIS),) * num_batched_args + (PartitionSpec(),) * n_rest
        return jax.shard_map(
            batched,
            mesh=mesh,
            in_specs=in_specs,
            out_specs=PartitionSpec(TRAINEE_AXIS),
            check_vma=False,
        )(*args)

    return run


def _map_trainees(fn, num_batched_args, *args):
    """``vmap``'s semantics with ``lax.map``: trainees one after another, un-batched ops."""
    batched, rest = args[:num_batched_args], args[num_batched_args:]
    if jax.tree.leaves(batched)[0].shape[0] == 1:  # one trainee here: no loop around it
        out = fn(*jax.tree.map(lambda x: x[0], batched), *rest)
        return jax.tree.map(lambda x: x[None], out)
    return jax.lax.map(lambda b: fn(*b, *rest), tuple(batched))


def trainee_mesh(engine: ResolvedEngine) -> jax.sharding.Mesh:
    return _mesh(engine.devices)


def _mesh(devices: tuple[jax.Device, ...]) -> jax.sharding.Mesh:
    return jax.sharding.Mesh(devices, (TRAINEE_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def trainee_sharding(engine: ResolvedEngine) -> NamedSharding | None:
    """Sharding of arrays with a leading trainee axis (None on a single device)."""
    if engine.num_devices == 1:
        return None
    return NamedSharding(trainee_mesh(engine), PartitionSpec(TRAINEE_AXIS))


def pad_trainees(tree, count: int, multiple: int):
    """Pad the leading axis of every leaf from ``count`` to a multiple of ``multiple`` by
    repeating the last trainee (its results are dropped afterwards)."""
    padded = -(-count // multiple) * multiple
    if padded == count:
        return tree
    import jax.numpy as jnp

    return jax.tree.map(
        lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], padded - count, axis=0)]), tree
    )
