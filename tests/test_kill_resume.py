"""``lrjax train`` killed with SIGKILL at random moments and started again until it finishes:
the run must end exactly as an uninterrupted one (bit-identical controller on CPU, the same
metrics), with ``metrics.jsonl`` neither duplicated nor truncated, for PPO and the actor-critic.

Slow (each start imports jax and compiles: ~20 s on a 2-core CPU); CI runs it (make test-slow).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lrjax.controller import load_controller

pytestmark = pytest.mark.slow

UPDATES = 12
RUNS = {
    "ppo": [
        "--algo", "ppo", "--preset", "paper_b", "--num-envs", "4", "--horizon", "5",
        "--steps-per-action", "2",
    ],
    "actor-critic": [
        "--algo", "actor-critic", "--num-envs", "2", "--steps-per-update", "10",
        "--reset-every", "20",
    ],
}  # fmt: skip
KILLS = 4


def _argv(algo: str, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "lrjax", "train", "--task", "regression_2d", *RUNS[algo],
        "--updates", str(UPDATES), "--updates-per-chunk", "1", "--eval-episodes", "0",
        "--seed", "3", "--out", str(out),
    ]  # fmt: skip


def _rows(out: Path) -> int:
    path = out / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _start(argv):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _kill_at(proc, out: Path, rows: int, delay: float) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``metrics.jsonl`` has ``rows`` rows (or its
    start, for 0); False when it had finished first."""
    while _rows(out) < rows and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.mark.parametrize("algo", sorted(RUNS))
def test_kill_9_at_random_moments_then_resume_equals_an_uninterrupted_run(algo, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = subprocess.run(_argv(algo, whole), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    rng = random.Random(f"kill-{algo}")
    # One kill while it starts (importing, compiling), the others after a random number of
    # updates and a random fraction of a second: inside an update, while metrics are written
    # or a checkpoint is saved.
    moments = [(0, rng.uniform(1.0, 8.0))]
    moments += [(n, rng.uniform(0.0, 0.3)) for n in sorted(rng.sample(range(1, UPDATES), 3))]
    hits, resumed_from = 0, []
    for rows, delay in moments[:KILLS]:
        before = _rows(killed)
        proc = _start(_argv(algo, killed))
        hits += _kill_at(proc, killed, max(rows, before), delay)
        resumed_from.append(before)
    resumed_from.append(_rows(killed))
    last = subprocess.run(_argv(algo, killed), capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stdout + last.stderr
    assert hits >= 3, f"only {hits} kills landed before the run finished"
    print(f"{algo}: {hits} kills landed; restarts found {resumed_from[1:]} rows of metrics")

    # metrics.jsonl: one row per update, in order, equal to the uninterrupted run's.
    rows = _metrics(killed)
    assert [r["update"] for r in rows] == list(range(1, UPDATES + 1))
    assert rows == _metrics(whole)
    # The controller: bit-identical arrays and the same config.
    a, b = load_controller(whole / "controller"), load_controller(killed / "controller")
    assert a.config == b.config
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert (whole / "controller" / "params.msgpack").read_bytes() == (
        killed / "controller" / "params.msgpack"
    ).read_bytes()


def _leaves(controller):
    import jax

    return jax.tree.leaves((controller.params, controller.normaliser))
