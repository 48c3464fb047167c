"""Host-side driver of PPO training: chunks of updates, progress, metrics file, checkpoints.

Inside a chunk, ``lax.scan`` runs ``updates_per_chunk`` PPO updates with nothing talking to the
host. Between chunks the host updates a progress bar (updates done, mean episode return, mean
final validation loss, learned LR range), appends one JSON line per update to
``metrics.jsonl`` and saves an orbax checkpoint every ``checkpoint_every`` chunks. A run started
again with the same output directory resumes from its latest checkpoint and ends bit-identical
to an uninterrupted run (on CPU), because every chunk is the same compiled function of the
restored state.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lrjax._validation import check_positive_int
from lrjax.algos.ppo import PPO, RunnerState
from lrjax.checkpoint import Checkpointer


def run(
    ppo: PPO,
    key: jax.Array,
    data: Any,
    *,
    out_dir: str | Path | None = None,
    updates_per_chunk: int = 5,
    checkpoint_every: int = 1,
    resume: bool = True,
    progress: bool = True,
) -> tuple[RunnerState, list[dict[str, float]]]:
    """Train ``ppo`` for ``ppo.config.num_updates`` updates in chunks.

    Args:
      ppo: the PPO setup (environment and config).
      key: the root key (the same key gives the same run).
      data: the task's data.
      out_dir: where ``metrics.jsonl`` and ``checkpoints/`` go (None: neither is written).
      updates_per_chunk: PPO updates per compiled chunk.
      checkpoint_every: save a checkpoint every this many chunks (and after the last).
      resume: continue from the latest checkpoint in ``out_dir`` if there is one.
      progress: show a progress bar.

    Returns:
      ``(runner, metrics)``: the final state and one dict of metrics per update done in this
      call (a resumed run returns only the updates it did).
    """
    check_positive_int("updates_per_chunk", updates_per_chunk)
    check_positive_int("checkpoint_every", checkpoint_every)
    total = ppo.config.num_updates
    init = jax.jit(ppo.init)
    runner = init(key, data)
    ckpt = metrics_file = None
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = Checkpointer(out_dir / "checkpoints")
        metrics_file = out_dir / "metrics.jsonl"
        if resume and ckpt.latest_step() is not None:
            runner = ckpt.restore(runner)
        elif metrics_file.exists():
            metrics_file.unlink()

    chunks = {}

    def chunk_fn(n):
        if n not in chunks:
            chunks[n] = jax.jit(
                lambda r, d: jax.lax.scan(lambda c, _: ppo.update(c, d), r, None, length=n)
            )
        return chunks[n]

    done = int(runner.update)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=done, desc="PPO updates", unit="update")
    history, chunk_index = [], 0
    while done < total:
        n = min(updates_per_chunk, total - done)
        runner, metrics = chunk_fn(n)(runner, data)
        rows = _rows(metrics, done)
        history += rows
        done += n
        chunk_index += 1
        if metrics_file is not None:
            with metrics_file.open("a") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
        if ckpt is not None and (chunk_index % checkpoint_every == 0 or done == total):
            ckpt.save(done, runner)
        if bar is not None:
            last = rows[-1]
            bar.update(n)
            bar.set_postfix(
                ret=_fmt(last["episode_return"], ".3g"),
                val=_fmt(last["final_val_loss"], ".3g"),
                lr=f"[{_fmt(last['lr_min'], '.1e')}, {_fmt(last['lr_max'], '.1e')}]",
            )
    if bar is not None:
        bar.close()
    if ckpt is not None:
        ckpt.close()
    return runner, history


def _rows(metrics: dict[str, jax.Array], first_update: int) -> list[dict[str, float]]:
    host = {k: np.asarray(v) for k, v in metrics.items()}
    n = len(next(iter(host.values())))
    rows = []
    for i in range(n):
        row = {"update": first_update + i + 1}
        for k, v in host.items():
            x = float(v[i])
            row[k] = x if math.isfinite(x) else None
        rows.append(row)
    return rows


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)
