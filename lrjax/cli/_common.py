"""What several commands share: the data options, loading a task's data, parsing lists, and
checking the arguments before any work starts."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def load_family_data(family, args):
    """``{dataset: data}`` of every dataset of a task family, with a line saying how long it
    took and on which backend the run goes."""
    import jax

    start = time.perf_counter()
    with flag_names(args):
        data = family.load_data(data_dir=args.data_dir, raw_dir=args.raw_dir)
    print(
        f"{family.name}: {', '.join(family.datasets)} ready in {time.perf_counter() - start:.1f} "
        f"s (backend {jax.default_backend()}, {jax.local_device_count()} device(s))",
        flush=True,
    )
    return data


def load_task_data(task, key, args):
    """The task's data (``key`` draws a random problem; real datasets ignore it), with a line
    saying how long it took and on which backend the run goes."""
    import jax

    start = time.perf_counter()
    with flag_names(args):  # raw_dir=... -> --raw-dir=...
        data = task.load_data(key, data_dir=args.data_dir, raw_dir=args.raw_dir)
    print(
        f"{task.name}: data ready in {time.perf_counter() - start:.1f} s "
        f"(backend {jax.default_backend()}, {jax.local_device_count()} device(s))",
        flush=True,
    )
    return data


def flag(dest: str) -> str:
    """The command-line flag of an ``argparse`` destination: ``eval_every`` -> ``--eval-every``."""
    return "--" + dest.replace("_", "-")


def check_flags(args, positive: Sequence[str] = (), non_negative: Sequence[str] = ()) -> None:
    """Check integer options by their flag names before any work: ``positive`` ones (when given)
    must be >= 1, ``non_negative`` ones (seeds, counts that may be 0) >= 0."""
    from lrjax._validation import check_non_negative_int, check_positive_int

    for dest in positive:
        if getattr(args, dest) is not None:
            check_positive_int(flag(dest), getattr(args, dest))
    for dest in non_negative:
        if getattr(args, dest) is not None:
            check_non_negative_int(flag(dest), getattr(args, dest))


def check_out_dir(path: str) -> Path:
    """``--out``, refused before any work when it is (or lies below) a file or is not
    writable."""
    from lrjax._validation import check_writable_dir

    return check_writable_dir("--out", path)


POSITIONAL = ("command", "data_command", "name")
"""``argparse`` destinations that are not options (never renamed by :func:`flag_names`)."""


@contextlib.contextmanager
def flag_names(args, renames: Mapping[str, str] | None = None) -> Iterator[None]:
    """Inside, a :class:`ConfigError` that names a config field set by an option names the
    option instead (``lr_min=2.0 must be smaller ...`` -> ``--lr-min=2.0 ...``): fields with the
    name of an option, and those of ``renames`` (field -> option destination)."""
    from lrjax._validation import ConfigError

    try:
        yield
    except ConfigError as e:
        options = [dest for dest in vars(args) if dest not in POSITIONAL]
        names = {dest: dest for dest in options} | dict(renames or {})
        message = str(e)
        for field, dest in sorted(names.items(), key=lambda kv: -len(kv[0])):
            message = re.sub(rf"(?<![\w.-]){re.escape(field)}=", flag(dest) + "=", message)
        raise ConfigError(message) from e


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
