"""The held-out benchmark's table, with and without its reference method in the run."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_general.py"


@pytest.fixture(scope="module")
def heldout_general():
    spec = importlib.util.spec_from_file_location("heldout_general", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(losses):
    return {
        "test_loss": losses,
        "test_accuracy": [0.9] * len(losses),
        "diverged": 0,
        "chance": 0,
        "lr_range": [0.01, 0.1],
    }


def test_table_pairs_every_method_with_the_reference(heldout_general):
    rows = {"ref": _row([1.0, 2.0, 3.0]), "other": _row([1.5, 2.5, 3.5])}
    table = heldout_general.table_md("t", rows, reference="ref")
    assert "minus ref [95% CI]" in table
    other = next(line for line in table.splitlines() if line.startswith("| other"))
    assert "+0.5000 [+0.5000, +0.5000]" in other
    assert all(line.count("|") == 8 for line in table.splitlines()[2:])


def test_table_without_its_reference_leaves_the_paired_column_out(heldout_general):
    # A run restricted by --only need not hold the reference (pair across runs instead).
    table = heldout_general.table_md("t", {"other": _row([1.5, 2.5])}, reference="ref")
    assert "minus" not in table
    assert "| other | 2.0000 +-" in table
    assert all(line.count("|") == 7 for line in table.splitlines()[2:])


def test_only_selects_the_kinds_of_baseline_it_names(heldout_general):
    # --only decides whether the (costly) transferred tuning runs at all
    selected = heldout_general.selected
    assert selected((), "transferred_")  # no --only: everything
    assert selected(("transferred_sgd",), "transferred_")
    assert selected(("transferred",), "transferred_")
    assert not selected(("pretrained:", "prodigy", "oracle_"), "transferred_")
    assert selected(("pretrained:", "oracle_"), "oracle_")


def test_oracle_tuning_is_cached_and_a_resumed_run_does_not_tune_again(
    heldout_general, tmp_path, monkeypatch
):
    calls = []

    class Tuned:
        config = {"learning_rate": 0.3}

    def fake_tune(spec, trainees, keys, steps, lrs):
        calls.append(spec.name)
        return Tuned()

    monkeypatch.setattr(heldout_general, "tune_across", fake_tune)
    cache = tmp_path / "oracles_t.json"
    first = heldout_general.oracles(None, None, steps=10, seeds=2, seed=0, cache=cache)
    assert sorted(calls) == sorted(heldout_general.ORACLES)
    assert set(first) == {f"oracle_{n} (lr 0.3)" for n in heldout_general.ORACLES}
    # resumed: the cached choices are used, nothing is tuned
    again = heldout_general.oracles(None, None, steps=10, seeds=2, seed=0, cache=cache)
    assert len(calls) == len(heldout_general.ORACLES)
    assert set(again) == set(first)
