"""Batch evaluation (lrjax.evaluation.batch): shapes, paired statistics against a hand
computation, the seed-overlap note, determinism, each controller in its own config's
environment, the CLI."""

import csv
import dataclasses
import json
import math

import jax
import numpy as np
import pytest
from _rl_problem import CONTROLLER, make_env, regression_problem
from scipy import stats

from lrjax import cli, evaluation
from lrjax._validation import ConfigError
from lrjax.controller import init_controller, save_controller
from lrjax.evaluation import run_episodes, run_schedules

SCALE = CONTROLLER.replace(action_mode="scale", alpha=1.5, initial_lr=0.05)
# The problem of regression_problem() (the task draws its problem from the data key).
KW = dict(
    baselines=("constant",), seeds=3, tune_seeds=2, horizon=4, test_every=2, seed=7,
    data={"regression_2d": regression_problem()[1]},
)  # fmt: skip


def _controllers():
    return {
        "a": init_controller(jax.random.key(0), CONTROLLER),
        "b": init_controller(jax.random.key(1), SCALE),  # another config: its own environment
        "c": init_controller(jax.random.key(2), CONTROLLER),  # shares a's program
    }


@pytest.fixture(scope="module")
def result():
    return evaluation.evaluate(
        ["regression_2d"], _controllers(), train_seeds={"a": 7, "b": 0}, **KW
    )


def test_arrays_have_one_row_per_method_and_seed(result):
    t = result.task("regression_2d")
    assert t.names[:3] == ("a", "b", "c") and t.names[3].startswith("constant (lr ")
    assert t.array("lr").shape == (4, 3, 4) and t.array("train_loss").shape == (4, 3, 4)
    assert t.array("test_loss").shape == (4, 3)
    assert t.array("test_curve_loss").shape == (4, 3, 2)
    np.testing.assert_array_equal(t.test_curve_steps, [10, 20])  # 2 actions x 5 steps each
    # the curve's last point is the final trainee; the first is an earlier, different one
    np.testing.assert_array_equal(t.array("test_curve_loss")[..., -1], t.array("test_loss"))
    assert np.all(t.array("test_curve_loss")[..., 0] != t.array("test_loss"))
    assert np.all(np.isfinite(t.array("train_loss")))
    assert len(result.rows()) == 4 * 3 and len(result.curve_rows()) == 4 * 3 * 4


def test_each_controller_runs_as_it_would_alone_in_its_own_environment(result):
    task, data = regression_problem()
    key = jax.random.fold_in(jax.random.key(7), 1)
    t = result.task("regression_2d")
    for name, c in _controllers().items():
        alone = run_episodes(make_env(task, c.config, horizon=4), c, key, data, 3, test_every=2)
        np.testing.assert_allclose(t.method(name).episodes.lr, alone.lr, rtol=1e-6)
        np.testing.assert_allclose(t.method(name).episodes.test_loss, alone.test_loss, rtol=1e-5)
    # b scales its LR from 0.05 by at most 1.5 per action; in a's environment it would not
    assert np.all(t.method("b").episodes.lr[:, 0] <= 0.05 * 1.5 + 1e-6)
    (tuned,) = t.tuned
    constant = t.method("constant").episodes
    (alone,) = run_schedules(
        make_env(task, horizon=4), np.full((1, 4), tuned.best_lr), key, data, 3, test_every=2
    )
    np.testing.assert_allclose(constant.test_loss, alone.test_loss, rtol=1e-5)


def test_summary_statistics_match_a_hand_computation(result):
    t = result.task("regression_2d")
    a = t.method("a").episodes.test_loss.astype(np.float64)
    base = t.method("constant").episodes.test_loss.astype(np.float64)
    rows = {r["method"]: r for r in result.summary()}
    t975 = stats.t.ppf(0.975, 2)
    half = t975 * np.std(a, ddof=1) / math.sqrt(3)
    assert rows["a"]["test_loss_mean"] == pytest.approx(np.mean(a))
    assert rows["a"]["test_loss_std"] == pytest.approx(np.std(a, ddof=1))
    assert rows["a"]["test_loss_ci_low"] == pytest.approx(np.mean(a) - half)
    assert math.isnan(rows["a"]["diff_vs_reference"])  # a is the reference
    d = a - base
    d_half = t975 * np.std(d, ddof=1) / math.sqrt(3)
    row = rows[t.method("constant").name]
    assert row["diff_vs_reference"] == pytest.approx(np.mean(d))
    assert row["diff_ci_low"] == pytest.approx(np.mean(d) - d_half)
    assert row["diff_ci_high"] == pytest.approx(np.mean(d) + d_half)
    assert "| a | " in result.table() and "a - method: test loss" in result.table()


def test_a_held_out_seed_that_was_a_training_seed_is_noted(result):
    (note,) = result.notes
    assert "root seed 7" in note and "'a'" in note and "'b'" not in note
    assert "Note: the held-out root seed 7" in result.table()


def test_same_key_same_result_and_csv(result, tmp_path):
    again = evaluation.evaluate(["regression_2d"], _controllers(), **KW)
    assert again.notes == ()
    for field in ("lr", "train_loss", "val_loss", "test_curve_loss", "test_accuracy"):
        np.testing.assert_array_equal(
            again.task("regression_2d").array(field), result.task("regression_2d").array(field)
        )
    paths = result.write_csv(tmp_path)
    assert [p.name for p in paths] == ["results.csv", "summary.csv", "curves.csv"]
    with paths[0].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and float(rows[0]["test_loss"]) == pytest.approx(
        float(result.task("regression_2d").method("a").episodes.test_loss[0])
    )


def test_a_baseline_family_can_be_the_reference():
    r = evaluation.evaluate(
        ["regression_2d"], {"a": init_controller(jax.random.key(0), CONTROLLER)},
        reference="constant", **KW,
    )  # fmt: skip
    rows = {row["method"]: row for row in r.summary()}
    assert math.isnan(next(v for k, v in rows.items() if k.startswith("constant"))["diff_ci_low"])
    assert not math.isnan(rows["a"]["diff_vs_reference"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(task_names=["nope"]), "nope"),
        (dict(seeds=1), "seeds=1 is not allowed"),
        (dict(baselines=("cosine",)), "baselines entry 'cosine'"),
        (dict(reference="x"), "reference='x' is not allowed"),
        (dict(tune_seeds=-1), "tune_seeds=-1"),
        (dict(controllers={}, baselines=()), "nothing to evaluate"),
        (dict(task_names=[]), "at least one task"),
        (
            dict(
                controllers={
                    "a": init_controller(jax.random.key(0), CONTROLLER.replace(steps_per_action=3)),
                    "b": init_controller(jax.random.key(0), CONTROLLER),
                }
            ),
            "steps_per_action differs",
        ),  # fmt: skip
    ],
)
def test_bad_arguments_fail_before_any_work(kwargs, message):
    args = dict(task_names=["regression_2d"], controllers=_controllers()) | KW | kwargs
    with pytest.raises(ConfigError, match=message):
        evaluation.evaluate(**args)


@pytest.mark.slow  # moved out of the default run for its time (make test-slow runs it)
def test_cli_over_two_tasks_writes_tables_csv_and_plots(tmp_path, capsys, fashion_mnist):
    saved = save_controller(tmp_path / "run" / "controller", _controllers()["a"])
    (tmp_path / "run" / "run.json").write_text(json.dumps({"seed": 5}))
    out = tmp_path / "eval"
    argv = [
        "evaluate", "--controllers", f"ppo={saved}", "--tasks", "regression_2d,mlp",
        "--baselines", "constant", "--tune-seeds", "2", "--seeds", "2", "--horizon", "2",
        "--seed", "5", "--test-every", "1", "--out", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "### regression_2d: 2 actions x 5 steps" in printed and "### mlp: " in printed
    note = "Note: the held-out root seed 5 is also the training root seed of controller 'ppo'"
    assert note in printed
    for name in ("results.md", "summary.csv", "results.csv", "curves.csv", "evaluation.json",
                 "tuning-regression_2d.json", "tuning-mlp.json", "curves-mlp.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert set(evaluation["tasks"]) == {"regression_2d", "mlp"} and evaluation["notes"]
    tuning = json.loads((out / "tuning-mlp.json").read_text())
    assert tuning["seed"] == 5 and tuning["baselines"][0]["name"] == "constant"
    with (out / "summary.csv").open() as f:
        assert [r["task"] for r in csv.DictReader(f)] == ["regression_2d"] * 2 + ["mlp"] * 2
    # baselines tuned elsewhere, read back; a pretrained controller by name needs no path
    again = ["evaluate", "--tasks", "regression_2d", "--controller", f"ppo={saved}",
             "--tuning", str(out / "tuning-regression_2d.json"), "--tune-seeds", "0",
             "--seeds", "2", "--horizon", "2", "--out", str(tmp_path / "again")]  # fmt: skip
    assert cli.main(again) == 0
    printed = capsys.readouterr().out
    assert ", tuned on regression_2d) |" in printed and "Note:" not in printed


@pytest.mark.slow  # ~70 s; CI runs it (make test-slow)
def test_cli_over_a_family_evaluates_each_of_its_variants(tmp_path, capsys, monkeypatch):
    """``--tasks FAMILY`` runs every variant of the family, each its own table and files (a
    variant's slashes become underscores in file names)."""
    from lrjax import tasks

    tiny = dataclasses.replace(
        tasks.get_family("mixed_mlp"), name="tiny_family", datasets=("fashion_mnist",),
        widths=(8,), depths=(1, 2), budgets=(400,), optimizers=("sgd",),
    )  # fmt: skip
    monkeypatch.setitem(tasks.FAMILIES, "tiny_family", tiny)
    variants = [t.name for t in tiny.variants()]
    assert variants == ["fashion_mnist/mlp-8x1/b128", "fashion_mnist/mlp-8x2/b128"]
    out = tmp_path / "eval"
    argv = [
        "evaluate", "--tasks", "tiny_family", "--baselines", "constant", "--tune-seeds", "2",
        "--seeds", "2", "--horizon", "2", "--steps-per-action", "2", "--out", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    for name in variants:
        assert f"### {name}: 2 actions x 2 steps" in printed
        assert (out / f"tuning-{name.replace('/', '_')}.json").stat().st_size > 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert list(evaluation["tasks"]) == variants


def test_a_momentum_controller_first_is_evaluated_beside_sgd_and_momentum_baselines():
    """The first controller sets the momentum: the baselines (SGD's constant, momentum's) still
    tune and run in their own optimizers, the controller under SGD with momentum."""
    from lrjax.features import FeatureSpec

    features = FeatureSpec(features=("train_loss", "log_lr"), normaliser="none")
    config = CONTROLLER.replace(features=features, momentum_control=True)
    controllers = {"m": init_controller(jax.random.key(3), config)}
    kw = KW | {"baselines": ("constant", "momentum"), "test_every": None}
    r = evaluation.evaluate(["regression_2d"], controllers, **kw)
    t = r.task("regression_2d")
    assert t.names[0] == "m" and t.names[1].startswith("constant (lr ")
    assert t.names[2].startswith("momentum (lr ")
    assert np.all(np.isfinite(t.array("test_loss")))
