"""The execution policy, in one place: how many trainees (or RL episodes) run side by side and how.

Every batched computation in lrjax (the training engine's trainees, an environment's episodes,
evaluation seeds) asks this module how to run: :class:`EngineConfig` holds the knobs (``None``
picks a backend-aware default), :func:`resolve` turns them into a :class:`Engine` for one
workload, and :meth:`Engine.over_items` runs a per-item function over a leading batch axis.

Why knobs at all (measured on the project's 2-core CPU, ``BENCHMARKS.md``):

* XLA:CPU runs convolutions inside a rolled ``while`` loop several times slower than the same
  step called from Python (jax issue 12868), so on CPU a conv trainee runs short, fully unrolled
  scan chunks; a dense trainee (MLP, 2-D regression) is the opposite case and wants long rolled
  scans.
* Vmapped convolutions become grouped convolutions, slow on XLA:CPU, so there the trainees of a
  conv task run one after another (``lax.map``), training with image-patches convolutions
  (the LeNet-style CNNs; XLA's for the ResNets, whose many-channel 3x3 convolutions XLA:CPU
  runs faster: :attr:`lrjax.tasks.Task.cpu_conv_impl`) and evaluating (forward only, nothing
  vmapped) with XLA's own, which is faster there.
* XLA:CPU uses about one core per program, so items are split over host devices with
  ``shard_map`` (``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before jax starts:
  :func:`configure_host_devices`).
* On GPU/TPU long rolled scans, wide vmaps and XLA's convolutions are fast.

One device rule: ``min(devices, local devices, items)`` devices, the item count padded up to a
multiple of it by repeating the last item, whose results are dropped. ``devices`` defaults to
all local devices, except for vmapped RL episodes (``shard_vmapped=False``), which stay on one
device: users vmap whole trainings again (``vmap(ppo.train)``), and a vmapped ``shard_map``
inside a scan did not finish on XLA:CPU (jax 0.10.2, a PPO test left waiting for 6 minutes).
With several processes (:mod:`lrjax.distributed`) items are split over every process's devices.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from lrjax import distributed
from lrjax._validation import check_choice, check_positive_int
from lrjax.models.layers import CONV_IMPLS

ITEM_AXIS = "items"
BATCHINGS = ("vmap", "map")


COLLECTIVE_TIMEOUT_S = 86_400
"""How long a host device may wait for the others at a collective (seconds): XLA:CPU's own
limit is 40 s, after which it kills the process ("Termination timeout for `all gather` ...");
a device whose items finish more than 40 s before another's (uneven cores, a loaded machine)
reaches the gather that ends ``shard_map`` that early (jax-ml/jax#31818)."""
_TIMEOUT_FLAGS = (
    "xla_cpu_collective_call_terminate_timeout_seconds",
    "xla_cpu_collective_timeout_seconds",
)
_TIMEOUT_FLAGS_SINCE = (0, 9)
"""The first jaxlib (major, minor) these flags are known in (0.10 checked; an older one would
refuse an unknown flag and abort)."""


def _jaxlib_version() -> tuple[int, ...]:
    from importlib import metadata

    try:
        return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return (0, 0)


def configure_host_devices(count: int | None = None) -> None:
    """Ask XLA for ``count`` host (CPU) devices (default: the number of cores), and let them
    wait for each other at a collective for :data:`COLLECTIVE_TIMEOUT_S` instead of XLA:CPU's
    40 s (a long program whose devices finish apart would otherwise be killed).

    Must run before jax initialises its backends (before the first computation); it keeps a
    device count or a timeout ``XLA_FLAGS`` already sets. Only affects the CPU backend.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    added = []
    if "xla_force_host_platform_device_count" not in flags:
        added.append(f"--xla_force_host_platform_device_count={count or os.cpu_count() or 1}")
    if _jaxlib_version() >= _TIMEOUT_FLAGS_SINCE:
        added += [f"--{f}={COLLECTIVE_TIMEOUT_S}" for f in _TIMEOUT_FLAGS if f not in flags]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([flags, *added]).strip()


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Execution knobs; ``None`` picks the backend-aware default (see :func:`resolve`).

    Attributes:
      chunk_size: trainee steps per compiled call of the training engine; the host shows
        progress between chunks.
      unroll: ``lax.scan`` unroll factor of a trainee's steps (``chunk_size`` or k = fully
        unrolled).
      devices: at most this many devices share the items (``shard_map``).
      batching: how the items on one device run: ``"vmap"`` (batched operations) or ``"map"``
        (``lax.map``: one after another, each with un-batched operations).
      conv_impl: how conv trainees compute convolutions when training: ``"patches"`` (image
        patches + matmul, flat cost under vmap on CPU) or ``"xla"`` (XLA's own).
      eval_conv_impl: the same for forward-only evaluation (rewards, probes, test metrics).
      grad_chunk: examples per forward/backward pass of a conv trainee's training step (its
        minibatch split into equal chunks, the gradient their mean); a value at least the
        batch size computes the minibatch at once.
      shard_vmapped: split vmapped RL episodes over the devices too (default False: they stay
        on one device, so that a whole training can be vmapped again, ``vmap(ppo.train)``).
        A training driven from the host (``lrjax train``, :func:`lrjax.algos.runner.run`)
        is never vmapped again: ``lrjax train`` sets it (PPO's update ran faster so on this
        2-core CPU; ``BENCHMARKS.md`` has the figure and its command).
    """

    chunk_size: int | None = None
    unroll: int | None = None
    devices: int | None = None
    batching: str | None = None
    conv_impl: str | None = None
    eval_conv_impl: str | None = None
    grad_chunk: int | None = None
    shard_vmapped: bool = False

    def __post_init__(self):
        for f in ("chunk_size", "unroll", "devices", "grad_chunk"):
            value = getattr(self, f)
            if value is not None:
                check_positive_int(f, value)
        if self.batching is not None:
            check_choice("batching", self.batching, BATCHINGS)
        for f in ("conv_impl", "eval_conv_impl"):
            if getattr(self, f) is not None:
                check_choice(f, getattr(self, f), CONV_IMPLS)


@dataclasses.dataclass(frozen=True)
class Engine:
    """Concrete knobs for one workload (hashable: a static argument of ``jax.jit``).

    Attributes:
      chunk_size: steps per compiled call.
      unroll: scan unroll factor (at most ``chunk_size``).
      devices: the devices the items are split over.
      batching: ``"vmap"`` or ``"map"``.
      conv_impl: convolution implementation for training.
      eval_conv_impl: convolution implementation for forward-only evaluation.
      grad_chunk: examples per forward/backward pass of a training step (None: all at once).
    """

    chunk_size: int
    unroll: int
    devices: tuple[jax.Device, ...]
    batching: str
    conv_impl: str
    eval_conv_impl: str
    grad_chunk: int | None = None

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def padded(self, count: int) -> int:
        """``count`` rounded up to a multiple of the device count."""
        return -(-count // self.num_devices) * self.num_devices

    def train_task(self, task):
        """``task`` with this engine's training convolution and gradient chunks."""
        return task.with_conv_impl(self.conv_impl).with_grad_chunk(self.grad_chunk)

    def eval_task(self, task):
        """``task`` with this engine's evaluation convolution (same params, same outputs)."""
        return task.with_conv_impl(self.eval_conv_impl)

    def over_items(self, fn: Callable, num_batched_args: int) -> Callable:
        """``fn`` over the leading axis of its first ``num_batched_args`` arguments (the rest
        are shared), with ``vmap``'s semantics (outputs stacked on a new leading axis), run as
        this engine says: batched by :attr:`batching` on each device, the items split over
        :attr:`devices` (padded to a multiple of their count; the padding is dropped)."""
        batched = _batch_over(fn, self.batching, num_batched_args)
        if self.num_devices == 1:
            return batched
        mesh = self.mesh()

        def run(*args):
            items, rest = args[:num_batched_args], args[num_batched_args:]
            count = jax.tree.leaves(items)[0].shape[0]
            items = pad_items(items, count, self.padded(count))
            specs = (PartitionSpec(ITEM_AXIS),) * num_batched_args + (PartitionSpec(),) * len(rest)
            out = jax.shard_map(
                batched,
                mesh=mesh,
                in_specs=specs,
                out_specs=PartitionSpec(ITEM_AXIS),
                check_vma=False,
            )(*items, *rest)
            return jax.tree.map(lambda x: x[:count], out)

        return run

    def mesh(self) -> jax.sharding.Mesh:
        return jax.sharding.Mesh(
            self.devices, (ITEM_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
        )

    def item_sharding(self) -> NamedSharding | None:
        """Sharding of arrays with a leading item axis (None on a single device)."""
        if self.num_devices == 1:
            return None
        return NamedSharding(self.mesh(), PartitionSpec(ITEM_AXIS))

    def replicated(self) -> NamedSharding | None:
        if self.num_devices == 1:
            return None
        return NamedSharding(self.mesh(), PartitionSpec())

    def shared_placement(self) -> jax.sharding.Sharding:
        """Where arrays that every item shares live (an agent's parameters): replicated over
        :attr:`devices`, or on the one device."""
        return self.replicated() or jax.sharding.SingleDeviceSharding(self.devices[0])


def resolve(
    config: EngineConfig | None,
    *,
    uses_conv: bool,
    num_steps: int,
    num_items: int | None = None,
    backend: str | None = None,
    shard_vmapped: bool = True,
    cpu_conv_impl: str = "patches",
) -> Engine:
    """Concrete knobs for items running ``num_steps`` steps of a (conv or dense) trainee.

    Defaults:
      - CPU, conv trainee: chunks of 10 fully unrolled steps; items mapped one after another
        on each device; ``cpu_conv_impl`` convolutions to train (the task's
        :attr:`~lrjax.tasks.Task.cpu_conv_impl`: patches for the LeNet-style CNNs, XLA's for
        the ResNets; patches whenever items are vmapped, whose XLA convolutions CPU runs
        grouped), XLA's to evaluate; a training
        minibatch's gradient computed at most 128 examples at a time (the activations of a
        larger one spill out of the caches and run slower per example; ``BENCHMARKS.md``).
      - CPU, dense trainee: rolled chunks of 500 steps (unroll 4), vmapped.
      - GPU/TPU: rolled chunks of 1,000 steps, vmapped, XLA's convolutions.
      - Devices: all local devices of the backend (only one for vmapped items when
        ``shard_vmapped`` is False), never more than items. Once several processes run
        (:mod:`lrjax.distributed`), all processes' devices, whatever the batching, so that
        every process takes part (items padded up to the device count if fewer).
    """
    config = config or EngineConfig()
    backend = backend or jax.default_backend()
    cpu = backend == "cpu"
    if cpu and uses_conv:
        chunk, unroll = 10, None
    elif cpu:
        chunk, unroll = 500, 4
    else:
        chunk, unroll = 1000, 1
    batching = config.batching or ("map" if cpu and uses_conv else "vmap")
    chunk = min(config.chunk_size or chunk, num_steps)
    unroll = min(config.unroll or unroll or chunk, chunk)
    check_choice("cpu_conv_impl", cpu_conv_impl, CONV_IMPLS)
    cpu_train_conv = cpu_conv_impl if batching == "map" else "patches"
    conv_impl = config.conv_impl or (cpu_train_conv if cpu else "xla")
    eval_conv = config.eval_conv_impl or ("xla" if batching == "map" or not cpu else "patches")
    grad_chunk = config.grad_chunk or (128 if cpu and uses_conv else None)
    available = distributed.devices(backend)
    if distributed.is_multiprocess():  # every process takes part, even with fewer items
        count = len(available)
    else:
        spread = batching == "map" or shard_vmapped or config.shard_vmapped
        count = min(config.devices or (len(available) if spread else 1), len(available))
        count = min(count, num_items or count)
    return Engine(
        chunk_size=chunk,
        unroll=unroll,
        devices=tuple(available[:count]),
        batching=batching,
        conv_impl=conv_impl,
        eval_conv_impl=eval_conv,
        grad_chunk=grad_chunk,
    )


def _batch_over(fn: Callable, batching: str, num_batched_args: int) -> Callable:
    check_choice("batching", batching, BATCHINGS)

    def run(*args):
        items, rest = args[:num_batched_args], args[num_batched_args:]
        if batching == "vmap":
            axes = (0,) * num_batched_args + (None,) * len(rest)
            return jax.vmap(fn, in_axes=axes)(*items, *rest)
        if jax.tree.leaves(items)[0].shape[0] == 1:  # one item here: no loop around it
            out = fn(*jax.tree.map(lambda x: x[0], items), *rest)
            return jax.tree.map(lambda x: x[None], out)
        return jax.lax.map(lambda b: fn(*b, *rest), tuple(items))

    return run


def pad_items(tree, count: int, padded: int):
    """Pad the leading axis of every leaf from ``count`` to ``padded`` by repeating the last
    item."""
    if padded == count:
        return tree
    return jax.tree.map(
        lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], padded - count, axis=0)]), tree
    )
