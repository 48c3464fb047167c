"""What several commands share: the data options, loading a task's data, parsing lists."""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def add_data_options(p) -> None:
    p.add_argument(
        "--data-dir", help="lrjax data root (default: $LRJAX_DATA_DIR, else ~/.cache/lrjax)"
    )
    p.add_argument(
        "--raw-dir",
        help="original dataset files, used when the data are not prepared yet "
        "(default: $LRJAX_RAW_DIR)",
    )


def add_task_option(p, detailed: bool) -> None:
    """``--task``; its choices are listed when ``detailed`` (it imports the task registry)."""
    p.add_argument("--task", default="fashion_cnn", choices=task_names() if detailed else None)


def task_names() -> list[str]:
    from lrjax.tasks import TASKS

    return list(TASKS)


def load_task_data(task, key, args):
    """The task's data (``key`` draws a random problem; real datasets ignore it), with a line
    saying how long it took and on which backend the run goes."""
    import jax

    start = time.perf_counter()
    data = task.load_data(key, data_dir=args.data_dir, raw_dir=args.raw_dir)
    print(
        f"{task.name}: data ready in {time.perf_counter() - start:.1f} s "
        f"(backend {jax.default_backend()}, {jax.local_device_count()} device(s))",
        flush=True,
    )
    return data


def parse_floats(field: str, text: str) -> list[float]:
    """``"0.1,0.01"`` -> ``[0.1, 0.01]``; anything else is a ConfigError naming ``field``."""
    from lrjax._validation import ConfigError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"{field}={text!r} is not allowed: expected comma-separated numbers, e.g. 0.1,0.01."
        ) from None


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-Infinity: a diverged run's loss) replaced by
    None and numpy scalars and arrays turned into Python ones, so that the JSON lrjax writes
    parses in strict parsers (which reject ``NaN`` and ``Infinity``)."""
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, value: Any) -> Path:
    """Write ``value`` as strict JSON (see :func:`strict_json`), indented."""
    path.write_text(json.dumps(strict_json(value), indent=1, allow_nan=False))
    return path


def add_distributed_options(p) -> None:
    """The options that start JAX's multi-process runtime (:mod:`lrjax.distributed`)."""
    g = p.add_argument_group(
        "multi-process (jax.distributed; one process per host, episodes split across them)"
    )
    g.add_argument("--coordinator-address", default=None, help="host:port of process 0")
    g.add_argument("--num-processes", type=int, default=None, help="processes taking part")
    g.add_argument("--process-id", type=int, default=None, help="this process's index (0..N-1)")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="start jax.distributed with what the cluster says (SLURM, Open MPI, Cloud TPU)",
    )


def run_distributed(args, work: Callable[[], int]) -> int:
    """Start the multi-process runtime if the options ask for it, then ``work()``: process 0
    prints; the other processes compute alongside it and print (and write) nothing."""
    from lrjax import distributed

    if args.distributed or args.coordinator_address or args.num_processes or args.process_id:
        distributed.initialize(args.coordinator_address, args.num_processes, args.process_id)
    if distributed.is_primary():
        return work()
    with contextlib.redirect_stdout(io.StringIO()):
        return work()
