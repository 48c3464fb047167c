"""Many processes, one program: lrjax on JAX's own multi-process runtime (``jax.distributed``).

JAX runs one Python process per host (multi-controller): every process runs the same program,
``jax.devices()`` lists the devices of all of them and ``jax.local_devices()`` its own. lrjax
needs only three things on top of that, all here:

* :func:`initialize` starts the runtime (``jax.distributed.initialize``; on CPU it also picks
  the gloo collectives, which XLA:CPU needs to reduce across processes). Call it first, before
  any computation. On a cluster that JAX detects (SLURM, Open MPI, Cloud TPU) no arguments are
  needed; elsewhere pass the coordinator's address, the process count and this process's id::

      # on each of N hosts, i = 0 .. N-1 (host 0's address and a free port):
      lrjax train --task fashion_mlp --num-envs 64 --coordinator-address host0:1234 \\
          --num-processes N --process-id i

* :func:`devices` is what the execution engine (:mod:`lrjax.engine`) splits items over: all
  processes' devices once the runtime runs, so PPO's and the actor-critic's episodes and an
  evaluation's seeds are sharded across processes (``shard_map`` over a global mesh), and the
  controller's gradient, a mean over episodes, is reduced across them by XLA inside the one
  compiled program. Nothing else changes: the same config on 1 process or N computes the same
  thing, up to the order of float reductions.
* :func:`global_inputs` and :func:`to_host` cross the host boundary: inputs every process holds
  in full (the task's data, keys) become replicated global arrays, and results sharded across
  processes are gathered before numpy reads them.

Files are written once: :func:`is_primary` (process 0) writes metrics, run descriptions, plots
and controllers; orbax checkpoints are saved by all processes together (each writes its own
shards; orbax coordinates), and restore onto whatever sharding the new run has, so a run resumes
on a different process count (the episode count, part of the run's config, must stay the same).
Written by hand because jax provides the runtime and the collectives but not these policies.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lrjax._validation import ConfigError


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Start JAX's multi-process runtime (a no-op if it already runs).

    Args:
      coordinator_address: ``host:port`` of process 0 (None: detected on a cluster JAX knows).
      num_processes: how many processes take part.
      process_id: this process's index in ``0 .. num_processes - 1``.
    """
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise ConfigError(
            "coordinator_address, num_processes and process_id go together: give all three "
            f"(got {coordinator_address!r}, {num_processes!r}, {process_id!r}), or none of them "
            "on a cluster that jax.distributed detects (SLURM, Open MPI, Cloud TPU)."
        )
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise ConfigError(
            f"process_id={process_id} is not allowed: expected 0 .. {num_processes - 1} "
            f"(num_processes={num_processes})."
        )
    if jax.distributed.is_initialized():
        return
    # XLA:CPU reduces across processes only with a collectives library; gloo ships with jaxlib.
    # Harmless on GPU/TPU, which use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )


def is_multiprocess() -> bool:
    """Whether more than one process takes part in the computation."""
    return jax.process_count() > 1


def is_primary() -> bool:
    """Whether this process writes files (process 0; always true in a single process)."""
    return jax.process_index() == 0


def devices(backend: str | None = None) -> list[jax.Device]:
    """The devices work is split over: this process's, or every process's once several run."""
    if is_multiprocess():
        return jax.devices(backend)
    return jax.local_devices(backend=backend)


def replicated_sharding(backend: str | None = None) -> NamedSharding:
    """Every device of :func:`devices` holds the whole array."""
    return NamedSharding(Mesh(np.array(devices(backend)), ("all",)), PartitionSpec())


def global_inputs(tree: Any) -> Any:
    """Arrays that every process holds in full (the same values everywhere), as replicated
    global arrays that a program over all processes' devices can take. Identity in a single
    process."""
    if not is_multiprocess():
        return tree
    sharding = replicated_sharding()

    def one(x):
        if not isinstance(x, jax.Array | np.ndarray) or getattr(x, "is_fully_replicated", False):
            return x
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(x))
            data = jax.make_array_from_process_local_data(sharding, data, data.shape)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, host, host.shape)

    return jax.tree.map(one, tree)


def to_host(tree: Any) -> Any:
    """Every array of ``tree`` as numpy, gathered from all processes when it is sharded across
    them (a collective: every process must call it)."""
    if not is_multiprocess():
        return jax.tree.map(np.asarray, tree)

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def barrier(name: str) -> None:
    """Wait until every process gets here (nothing in a single process)."""
    if is_multiprocess():
        multihost_utils.sync_global_devices(name)
