"""The command line: baselines table/JSON/PNG, PPO training outputs, and clear errors."""

import json

import pytest

from lrjax import cli
from lrjax.controller import load_controller


def test_baselines_writes_table_json_and_plot(tmp_path, capsys):
    code = cli.main(
        [
            "baselines",
            "--task",
            "regression_2d",
            "--optimizers",
            "sgd,step_decay",
            "--seeds",
            "2",
            "--steps",
            "40",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| sgd " in out and "| step_decay " in out and "learning_rate=" in out
    results = json.loads((tmp_path / "regression_2d.json").read_text())
    assert [r["optimizer"] for r in results["optimizers"]] == ["sgd", "step_decay"]
    assert results["optimizers"][0]["num_configs"] == 5  # paper B's LR grid
    assert results["optimizers"][1]["num_configs"] == 16  # the documented step-decay grid
    assert (tmp_path / "regression_2d.png").stat().st_size > 10_000


def test_train_ppo_writes_controller_metrics_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(
        [
            "train",
            "--algo",
            "ppo",
            "--task",
            "regression_2d",
            "--features",
            "paper_b",
            "--updates",
            "2",
            "--num-envs",
            "2",
            "--horizon",
            "3",
            "--steps-per-action",
            "2",
            "--updates-per-chunk",
            "1",
            "--eval-episodes",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "learned controller" in printed and "best constant" in printed
    assert "final trainees on the test split: learned controller: test loss" in printed
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    controller = load_controller(out / "controller")
    assert controller.config.action_mode == "scale"
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["eval_episodes"] == 2 and "best_constant_lr" in summary
    assert summary["learned"]["test_loss_mean"] > 0
    for png in ("evaluation.png", "training.png"):
        assert (out / png).stat().st_size > 10_000


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["baselines", "--task", "regression_2d", "--optimizers", "sgd,adamw2"],
            "optimizer='adamw2' is not known",
        ),
        (["baselines", "--task", "imagenet"], "task='imagenet' is not known"),
        (["baselines", "--task", "regression_2d", "--lrs", "0.1,-1"], "learning_rate=-1.0"),
        (["baselines", "--task", "regression_2d", "--steps", "0"], "steps=0"),
        (["fit", "--task", "regression_2d", "--lr", "0"], "learning_rate=0.0"),
        (["data", "prepare", "imagenet"], "dataset='imagenet' is not known"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
