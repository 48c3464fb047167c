"""The host-side driver of every RL algorithm: chunks of updates, progress, metrics, checkpoints.

An algorithm is anything with ``init(key, data) -> state``, ``run_updates(state, data, n) ->
(state, metrics)`` (``n`` updates in one ``lax.scan``, metrics stacked per update),
``num_updates`` and a state with an ``updates_done`` counter: PPO (paper A) and the actor-critic
(paper B) alike.

Inside a chunk nothing talks to the host. Between chunks the host updates a progress bar
(updates done and the last update's return, final validation loss and LR range), appends one
JSON line per update to ``metrics.jsonl`` (with the wall-clock seconds it took) and saves an
orbax checkpoint every ``checkpoint_every`` chunks. A run started again with the same output
directory resumes from its latest checkpoint and ends bit-identical to an uninterrupted run (on
CPU), because every chunk is the same compiled function of the restored state. ``run.json``
records what the run is (``signature``); resuming with a different one, or asking for fewer
updates than its checkpoint holds, is refused before any work (:func:`check_run_dir`, which a
command line calls first too), naming the fields that differ, so two runs are never mixed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jax

from lrjax import distributed
from lrjax._validation import ConfigError, check_positive_int
from lrjax.checkpoint import Checkpointer

METRICS_FILE = "metrics.jsonl"
RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"

Signature = dict[str, Any]
SignatureUpgrade = Callable[[Signature], Signature]
"""Turns a ``run.json`` written by an older version of a command into the current form of its
signature (keys renamed since), so that the command's old runs resume."""


class UpdatesDoneError(ConfigError):
    """An output directory holds a run with more updates done (``done``) than asked for
    (``asked``): it cannot be resumed to fewer."""

    def __init__(self, out_dir: str | Path, done: int, asked: int):
        self.out_dir, self.done, self.asked = Path(out_dir), done, asked
        super().__init__(
            f"{str(out_dir)!r} holds a run with {done} updates done, more than the {asked} "
            f"asked for; ask for at least {done} updates, or choose another output directory."
        )


class Algorithm(Protocol):
    name: str

    @property
    def num_updates(self) -> int: ...

    def init(self, key: jax.Array, data: Any) -> Any: ...

    def run_updates(self, state: Any, data: Any, num_updates: int) -> tuple[Any, dict]: ...


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run` leaves.

    Attributes:
      state: the algorithm's final state.
      history: one dict of metrics per update of the whole run (read back from
        ``metrics.jsonl`` when the run was resumed), each with ``update`` and ``seconds``.
      new_updates: updates done by this call (0: the run was already complete).
      train_seconds: wall-clock seconds of all updates of the run, compilation included.
    """

    state: Any
    history: list[dict[str, float | None]]
    new_updates: int
    train_seconds: float

    @property
    def already_complete(self) -> bool:
        return self.new_updates == 0


def run(
    algo: Algorithm,
    key: jax.Array,
    data: Any,
    *,
    out_dir: str | Path | None = None,
    signature: Signature | None = None,
    upgrade_signature: SignatureUpgrade | None = None,
    updates_per_chunk: int = 5,
    checkpoint_every: int = 1,
    resume: bool = True,
    progress: bool = True,
) -> RunResult:
    """Train ``algo`` for ``algo.num_updates`` updates in chunks of ``updates_per_chunk``.

    Args:
      algo: the algorithm (e.g. :class:`lrjax.algos.ppo.PPO`).
      key: the root key (the same key gives the same run).
      data: the task's data.
      out_dir: where ``metrics.jsonl``, ``run.json`` and ``checkpoints/`` go (None: nothing
        is written and nothing resumed).
      signature: a JSON-able description of the run (task, configs, seed); resuming into a
        directory whose ``run.json`` differs raises a :class:`ConfigError`.
      upgrade_signature: applied to a ``run.json`` before it is compared with ``signature``
        (an older form of it); resuming writes ``signature`` in its place.
      updates_per_chunk: updates per compiled chunk.
      checkpoint_every: save a checkpoint every this many chunks (and after the last).
      resume: continue from the latest checkpoint in ``out_dir`` if there is one.
      progress: show a progress bar (it says "compiling" while XLA compiles).
    """
    check_positive_int("updates_per_chunk", updates_per_chunk)
    check_positive_int("checkpoint_every", checkpoint_every)
    total = algo.num_updates
    if out_dir is not None and resume and updates_done(out_dir) > 0:
        check_run_dir(out_dir, signature, total, upgrade_signature)  # before any work
    key, data = distributed.global_inputs((key, data))
    state = jax.jit(algo.init)(key, data)
    ckpt = metrics_file = None
    history: list[dict] = []
    if out_dir is not None:
        out_dir = Path(out_dir)
        ckpt, state, history = _open(out_dir, state, signature, resume)
        metrics_file = out_dir / METRICS_FILE

    done = start = int(state.updates_done)
    bar = _progress_bar(progress, total, done, algo.name)
    chunks: dict[int, Any] = {}
    chunk_index = 0
    while done < total:
        n = min(updates_per_chunk, total - done)
        begin = time.perf_counter()
        first = n not in chunks
        if first:
            chunks[n] = compile_chunk(algo, n, state)
            if bar is not None:
                bar.set_description(f"{algo.name}: compiling, then {n} update(s)")
        state, metrics = jax.block_until_ready(chunks[n](state, data))  # dispatch is async
        if first and bar is not None:
            bar.set_description(f"{algo.name} updates")
        rows = _rows(metrics, done, (time.perf_counter() - begin) / n)
        history += rows
        done += n
        chunk_index += 1
        if metrics_file is not None and distributed.is_primary():
            with metrics_file.open("a") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
        if ckpt is not None and (chunk_index % checkpoint_every == 0 or done == total):
            ckpt.save(done, state)
        if bar is not None:
            bar.update(n)
            bar.set_postfix(_postfix(rows[-1]))
    if bar is not None:
        bar.close()
    if ckpt is not None:
        ckpt.close()
    seconds = sum(row.get("seconds") or 0.0 for row in history)
    return RunResult(state, history, done - start, seconds)


def compile_chunk(algo: Algorithm, num_updates: int, state: Any):
    """``algo.run_updates(state, data, num_updates)`` jitted so that the state comes out with the
    sharding it went in with (episodes split over devices, the rest replicated).

    Without it, the state after a chunk came out sharded differently from the initial one (the
    engine's ``shard_map`` decides the episodes' layout inside the program), so the second call
    compiled the whole program again (~1 min on a conv task). With it every chunk of one length
    is one compilation, whatever the call (tests/test_algos_runner.py counts them). Metrics come out
    replicated, so that every process can read them.

    An algorithm with ``host_driven = True`` (:class:`lrjax.algos.family.FamilyPPO`, which
    draws a trainee per update on the host) is called as it is: it compiles its own programs.
    """
    if getattr(algo, "host_driven", False):  # its updates call compiled programs themselves
        return lambda s, d: algo.run_updates(s, d, num_updates)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    metrics = distributed.replicated_sharding() if distributed.is_multiprocess() else None
    return jax.jit(
        lambda s, d: algo.run_updates(s, d, num_updates), out_shardings=(shardings, metrics)
    )


def _open(out_dir: Path, state, signature, resume: bool):
    """The checkpointer of ``out_dir``, the state to start from (restored when resuming) and
    the metrics of the updates already done (:func:`run` has checked that the run may be
    resumed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(out_dir / CHECKPOINTS)
    history = []
    resuming = resume and ckpt.latest_step() is not None
    if resuming:
        state = ckpt.restore(state)
        # Rows of updates after the checkpoint (a run killed between writing its metrics and
        # saving its checkpoint) are dropped: those updates run again.
        history = read_metrics(out_dir / METRICS_FILE, limit=int(state.updates_done))
    distributed.barrier("lrjax-runner-open")  # every process has read before process 0 writes
    if distributed.is_primary():
        metrics = out_dir / METRICS_FILE
        metrics.write_text("".join(json.dumps(row) + "\n" for row in history))
        if signature is not None:
            (out_dir / RUN_FILE).write_text(json.dumps(signature, indent=1, sort_keys=True))
    return ckpt, state, history


def read_metrics(path: str | Path, limit: int | None = None) -> list[dict[str, float | None]]:
    """The rows of a ``metrics.jsonl`` (empty if there is none); with ``limit``, its first
    ``limit`` rows only (a half-written row after them, left by a killed run, is not read)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines()[:limit], start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise ConfigError(
                f"{str(path)!r}, line {number}, is not a JSON row of metrics ({line[:60]!r}); "
                "delete the file's lines from there on and run again (they are redone)."
            ) from None
    return rows


def updates_done(out_dir: str | Path) -> int:
    """The updates done by the run in ``out_dir``: its latest checkpoint's step (0: none). Read
    from the checkpoint folders' names, so nothing is created (orbax would create the folder)."""
    checkpoints = Path(out_dir) / CHECKPOINTS
    found = checkpoints.iterdir() if checkpoints.is_dir() else ()
    return max((int(p.name) for p in found if p.name.isdigit() and p.is_dir()), default=0)


def check_run_dir(
    out_dir: str | Path,
    signature: Signature | None,
    num_updates: int,
    upgrade_signature: SignatureUpgrade | None = None,
) -> None:
    """Refuse, reading only, to resume the run in ``out_dir`` as a run of ``signature`` and
    ``num_updates`` updates: a different run (:func:`check_signature`), or one with more
    updates done (:class:`UpdatesDoneError`). :func:`run` calls it before any work when it
    resumes; a command line calls it first, before loading data."""
    check_signature(out_dir, signature, upgrade_signature)
    done = updates_done(out_dir)
    if done > num_updates:
        raise UpdatesDoneError(out_dir, done, num_updates)


def check_signature(
    out_dir: str | Path,
    signature: Signature | None,
    upgrade_signature: SignatureUpgrade | None = None,
) -> None:
    """Refuse (a :class:`ConfigError` naming the fields that differ) a run whose ``signature``
    differs from the one ``out_dir``'s ``run.json`` records (after ``upgrade_signature``)."""
    out_dir = Path(out_dir)
    path = out_dir / RUN_FILE
    if signature is None or not path.exists():
        return
    saved = json.loads(path.read_text())
    if upgrade_signature is not None:
        saved = upgrade_signature(saved)
    now = json.loads(json.dumps(signature, sort_keys=True))
    differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if differ:
        details = "; ".join(f"{k}: {saved.get(k)!r} there, {now.get(k)!r} now" for k in differ)
        raise ConfigError(
            f"{str(out_dir)!r} holds a different run ({details}). Resume it with the same "
            "settings, or choose another output directory (--out) for the new run."
        )


def _rows(metrics: dict[str, jax.Array], first_update: int, seconds: float) -> list[dict]:
    host = distributed.to_host(metrics)
    n = len(next(iter(host.values())))
    rows = []
    for i in range(n):
        row: dict[str, float | int | None] = {"update": first_update + i + 1}
        for k, v in host.items():
            x = float(v[i])
            row[k] = x if math.isfinite(x) else None
        row["seconds"] = seconds
        rows.append(row)
    return rows


def _progress_bar(progress: bool, total: int, done: int, name: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"{name} updates", unit="update")


def _postfix(row: dict) -> dict[str, str]:
    fmt = lambda x, spec: "n/a" if x is None else format(x, spec)
    out = {}
    if "episode_return" in row:
        out["return"] = fmt(row["episode_return"], ".3g")
    if "final_val_loss" in row:
        out["val"] = fmt(row["final_val_loss"], ".3g")
    if "train_loss" in row:
        out["loss"] = fmt(row["train_loss"], ".3g")
    if "td_error_sq" in row:
        out["td2"] = fmt(row["td_error_sq"], ".1e")
    if "approx_kl" in row:
        out["kl"] = fmt(row["approx_kl"], ".1e")
    if "explained_variance" in row:
        out["ev"] = fmt(row["explained_variance"], ".2f")
    if "lr_min" in row and "lr_max" in row:
        out["lr"] = f"[{fmt(row['lr_min'], '.1e')}, {fmt(row['lr_max'], '.1e')}]"
    return out
