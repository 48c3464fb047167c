"""The command line: baselines table/JSON/PNG, PPO training outputs, help, and clear errors."""

import json
import subprocess
import sys

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


@pytest.mark.slow  # moved out of the default run for its time (make test-slow runs it)
def test_train_ppo_writes_controller_metrics_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--algo",
        "ppo",
        "--task",
        "regression_2d",
        "--preset",
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
    code = cli.main(argv)
    assert code == 0
    printed = capsys.readouterr().out
    assert "| learned controller |" in printed and "(best of its family)" in printed
    assert "step decay from" in printed and "learned LRs ranged over" in printed
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    controller = load_controller(out / "controller")
    # the saved controller carries what training used: the preset's and the given options
    assert controller.config.action_mode == "absolute"  # paper B's
    assert controller.config.features.names == ("train_loss",)
    assert controller.config.steps_per_action == 2 and controller.config.initial_lr == 0.01
    summary = json.loads((out / "evaluation.json").read_text())
    assert summary["eval_episodes"] == 2 and summary["train_seconds"] > 0
    methods = [m["method"] for m in summary["methods"]]
    assert methods[0] == "learned controller" and len(methods) == 11  # + 5 constants, 5 decays
    for png in ("evaluation.png", "training.png"):
        assert (out / png).stat().st_size > 10_000

    # Re-running the finished run evaluates it again and keeps the recorded training time.
    assert cli.main(argv) == 0
    assert "is complete (2 updates)" in capsys.readouterr().out
    again = json.loads((out / "evaluation.json").read_text())
    assert again["train_seconds"] == pytest.approx(summary["train_seconds"])
    # ... and a different run into the same folder is refused, naming what differs.
    assert cli.main([*argv, "--horizon", "4"]) == 2
    assert "horizon: 3 there, 4 now" in capsys.readouterr().err

    # The held-out protocol on the saved controller: baselines tuned on tuning seeds (their
    # grids extended past a winner at an end), then paired on held-out seeds.
    results = tmp_path / "results"
    evaluate = [
        "evaluate",
        "--controller",
        f"ppo={out / 'controller'}",
        "--task",
        "regression_2d",
        "--horizon",
        "3",
        "--tune-seeds",
        "2",
        "--seeds",
        "3",
        "--baselines",
        "constant,adam",
        "--out",
        str(results),
    ]
    assert cli.main(evaluate) == 0
    printed = capsys.readouterr().out
    assert "| ppo | " in printed and "| constant (lr " in printed and "| adam (lr " in printed
    assert "ppo - method: test loss [95% CI]" in printed
    tuning = json.loads((results / "tuning.json").read_text())
    for t in tuning["baselines"]:
        inf = float("inf")  # a diverged grid point is null in the (strict) JSON
        pairs = zip(t["lrs"], t["validation_loss"], strict=True)
        losses = {lr: inf if v is None else v for lr, v in pairs}
        assert t["best_lr"] == min(losses, key=losses.get)
        # extended past an end winner, then refined around it: a worse LR on both sides, or
        # the grid's end is flagged (6-step episodes here: Adam wants ever larger LRs)
        interior = t["lrs"][0] < t["best_lr"] < t["lrs"][-1]
        assert interior != t["at_edge"] and len(t["lrs"]) > 5
    assert "(at the end of its grid" in printed or not any(
        t["at_edge"] for t in tuning["baselines"]
    )
    saved = json.loads((results / "evaluation.json").read_text())
    methods = saved["tasks"]["regression_2d"]["methods"]
    assert all(len(m["test_loss"]) == 3 for m in methods.values())
    assert (results / "curves.png").stat().st_size > 10_000
    assert (results / "results.md").read_text().count("\n| ") == 4  # header + 3 methods
    # Baselines tuned elsewhere (a transfer's source task) are read, not tuned again.
    again = ["--tuning", str(results / "tuning.json"), "--tune-seeds", "0"]
    assert cli.main([*evaluate[:-2], *again, "--out", str(tmp_path / "again")]) == 0
    printed = capsys.readouterr().out
    assert "baselines as tuned on regression_2d" in printed and "tuning on" not in printed
    assert "| constant (lr " in printed and ", tuned on regression_2d) |" in printed


def test_top_level_help_does_not_import_jax():
    code = (
        "import sys\nfrom lrjax.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\nprint('jax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "lrjax train" in out.stdout and out.stdout.strip().endswith("False")


def test_subcommand_help_lists_choices_and_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["baselines", "--help"])
    text = capsys.readouterr().out
    assert "step_decay" in text and "SGD, step decay (paper A baseline)" in text
    assert "(default: 1000)" in text and "regression_2d" in text
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "{ppo,actor-critic}" in text and "pred_change_var" in text
    assert "actions per episode (40)" in text
    assert "(default: None)" not in text and "(default: False)" not in text  # said or unset


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["baselines", "--task", "regression_2d", "--optimizers", "sgd,adamw2"],
            "optimizer='adamw2' is not known",
        ),
        (["baselines", "--task", "regression_2d", "--lrs", "abc"], "lrs='abc' is not allowed"),
        (["baselines", "--task", "regression_2d", "--lrs", "0.1,-1"], "learning_rate=-1.0"),
        (["baselines", "--task", "regression_2d", "--steps", "0"], "steps=0"),
        (["fit", "--task", "regression_2d", "--lr", "0"], "--lr=0.0"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["baselines", "--task", "imagenet"], "invalid choice: 'imagenet'"),
        (["data", "prepare", "imagenet"], "invalid choice: 'imagenet'"),
        (["train", "--reward", "accuracy"], "invalid choice: 'accuracy'"),
    ],
)
def test_unknown_choices_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow  # about a minute on 2 cores: run with the slow tests (make test-slow)
def test_train_actor_critic_writes_controller_metrics_plots_and_resumes(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "ac"
    argv = [
        "train",
        "--algo",
        "actor-critic",
        "--task",
        "regression_2d",
        "--updates",
        "2",
        "--steps-per-update",
        "10",
        "--reset-every",
        "15",
        "--num-envs",
        "2",
        "--updates-per-chunk",
        "1",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "actor-critic (meta) on regression_2d: 2 updates x 2 trainee(s) x 10 steps" in printed
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2] and rows[1]["episodes"] == 2  # reset at 15
    controller = load_controller(out / "controller")
    assert controller.config.features.names == ("train_loss",)  # paper B's preset
    assert controller.config.action_mode == "absolute" and controller.config.steps_per_action == 1
    assert (out / "training.png").stat().st_size > 10_000
    # Three updates into the same folder resume from the second; training.png shows the whole
    # run (updates 1-3), not only the update of this process.
    from lrjax import plots

    plotted = []
    plot = plots.plot_actor_critic_training
    monkeypatch.setattr(
        plots,
        "plot_actor_critic_training",
        lambda history, *a, **k: (plotted.append(history), plot(history, *a, **k))[1],
    )
    assert cli.main([*argv[:5], "--updates", "3", *argv[7:]]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2, 3]
    assert [r["update"] for r in plotted[-1]] == [1, 2, 3]
    # Options of the other algorithm are refused before any work.
    assert cli.main([*argv, "--horizon", "4"]) == 2
    assert "--horizon is not allowed with --algo actor-critic" in capsys.readouterr().err
    assert cli.main(["train", "--task", "regression_2d", "--gamma", "0.5"]) == 2
    assert "--gamma is not allowed with --algo ppo" in capsys.readouterr().err


def test_json_files_are_strict_and_tuning_reads_diverged_points_back():
    """A diverged run's loss (inf) or a NaN used to be written as Infinity / NaN, which strict
    JSON parsers reject; they are null now, and tuning files read null back as inf."""
    import numpy as np

    from lrjax.cli._common import strict_json
    from lrjax.evaluation import read_tuning

    value = {"a": float("nan"), "b": [np.float32(np.inf), 1.0], "c": np.arange(2), 3: -np.inf}
    text = json.dumps(strict_json(value), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [None, 1.0], "c": [0, 1], "3": None}
    tuning = {
        "task": "t",
        "baselines": [{"name": "constant", "lrs": [0.1, 1.0], "validation_loss": [0.5, None]}],
    }
    (tuned,) = read_tuning(json.loads(json.dumps(tuning)))
    assert tuned.validation_loss == (0.5, np.inf) and tuned.best_lr == 0.1


def test_a_run_dir_of_the_cli_before_preset_resumes(tmp_path):
    """Before ``--preset``, ``run.json`` held the preset under ``features`` and the feature names
    under ``state``: such a run is the run of today's command with ``--preset`` and
    ``--features``, and a different preset is still refused."""
    from lrjax._validation import ConfigError
    from lrjax.cli import build_parser
    from lrjax.cli import train as train_cli

    out = tmp_path / "run"
    argv = ["train", "--task", "regression_2d", "--features", "train_loss", "--out", str(out)]

    def setup(*flags):
        args = build_parser("train").parse_args([*argv, *flags])
        return args, train_cli._setup(args)[3]

    args, signature = setup("--preset", "paper_a")
    old = {k: v for k, v in signature.items() if k not in ("preset", "features")}
    old |= {"features": "paper_a", "state": "train_loss"}
    out.mkdir()
    (out / "run.json").write_text(json.dumps(old, indent=1, sort_keys=True))
    assert train_cli.upgrade_signature(old) == json.loads(json.dumps(signature))
    train_cli._check_run_dir(args, out, signature)  # the same run: resumed
    args, signature = setup("--preset", "lrjax")
    with pytest.raises(ConfigError, match="preset: 'paper_a' there, 'lrjax' now"):
        train_cli._check_run_dir(args, out, signature)


def test_the_run_signature_holds_the_task_with_actions_per_run_and_not_for_a_family(tmp_path):
    """A task run with ``--actions-per-run`` resumed on another task is refused (its signature
    once dropped the task); a family run's signature leaves out what the family draws, and an
    older family run that recorded them still resumes; the actor-critic's stabilisers enter
    the signature only when set (runs made before them resume)."""
    from lrjax._validation import ConfigError
    from lrjax.cli import build_parser
    from lrjax.cli import train as train_cli

    def setup(*argv):
        args = build_parser("train").parse_args(["train", *argv, "--out", str(tmp_path / "x")])
        return args, train_cli._setup(args)[3]

    out = tmp_path / "run"
    out.mkdir()
    _, signature = setup("--task", "regression_2d", "--actions-per-run", "5")
    (out / "run.json").write_text(json.dumps(signature, sort_keys=True))
    args, other = setup("--task", "fashion_mlp", "--actions-per-run", "5")
    with pytest.raises(ConfigError, match="task"):
        train_cli._check_run_dir(args, out, other)

    args, family = setup("--family", "mixed_mlp")
    assert not {"task", "batch_size", "horizon", "optimizer"} & set(family)
    old = {**json.loads(json.dumps(family)), "task": "fashion_mlp", "horizon": 20}
    (out / "run.json").write_text(json.dumps(old, sort_keys=True))
    train_cli._check_run_dir(args, out, family)  # resumed

    _, ac = setup("--task", "regression_2d", "--algo", "actor-critic")
    assert "target_update" not in ac and "twin_critics" not in ac
    _, ac = setup("--task", "regression_2d", "--algo", "actor-critic", "--target-update", "0.01")
    assert ac["target_update"] == 0.01
    assert "actor_learning_rate" not in ac
    args = build_parser("train").parse_args(
        ["train", "--task", "regression_2d", "--algo", "actor-critic", "--out", str(tmp_path)]
        + ["--actor-learning-rate", "0.003", "--critic-learning-rate", "0.02"]
    )
    _, _, learner, steps = train_cli._setup(args)
    assert steps["actor_learning_rate"] == 0.003 and steps["critic_learning_rate"] == 0.02
    assert learner.config.actor_learning_rate == 0.003
    assert learner.config.critic_learning_rate == 0.02
    with pytest.raises(ConfigError, match="--actor-learning-rate is not allowed with --algo"):
        setup("--task", "regression_2d", "--actor-learning-rate", "0.003")

    # --bounds-follow-start: in the signature only when set, and in the family's MDP
    assert "bounds_follow_start" not in family
    args = build_parser("train").parse_args(
        ["train", "--family", "mixed_mlp", "--bounds-follow-start", "--out", str(tmp_path / "y")]
    )
    _, _, algo, follow = train_cli._setup(args)
    assert follow["bounds_follow_start"] is True and algo.env.bounds_follow_start
    with pytest.raises(ConfigError, match="--bounds-follow-start is not allowed with --algo"):
        setup("--task", "regression_2d", "--algo", "actor-critic", "--bounds-follow-start")


def test_train_family_refuses_what_the_family_draws_before_any_work(capsys, tmp_path):
    """``--family`` draws the budget, batch size and optimizer, trains with PPO and is
    evaluated on held-out trainees: options that contradict it are refused by name."""
    base = ["train", "--family", "mixed_mlp", "--out", str(tmp_path / "f")]
    for extra, message in [
        (["--horizon", "4"], "--horizon is not allowed with --family"),
        (["--optimizer", "adam"], "--optimizer is not allowed with --family"),
        (["--batch-size", "32"], "--batch-size is not allowed with --family"),
        (["--algo", "actor-critic"], "--family is not allowed with --algo actor-critic"),
        (["--eval-episodes", "3"], "--eval-episodes is not allowed with --family"),
    ]:
        assert cli.main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["train", "--family", "no_such", "--out", str(tmp_path / "g")]) == 2
    assert "family='no_such' is not known" in capsys.readouterr().err
    assert not (tmp_path / "f").exists() and not (tmp_path / "g").exists()


def test_fit_with_a_controller_is_the_users_optax_chain(capsys):
    """``lrjax fit --controller`` trains exactly ``chain(base, scale_by_controller(...))``, from
    the LR that ``--lr`` moves the controller's start to."""
    import jax
    import numpy as np
    import optax

    from lrjax import pretrained, tasks, training
    from lrjax.controller import current_lr, scale_by_controller

    argv = ["fit", "--task", "regression_2d", "--controller", "mlp_family_adam"]
    argv += ["--optimizer", "adam", "--lr", "0.01", "--steps", "40", "--eval-every", "40"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    printed = float(out.split("final test loss ")[1].split()[0])
    controller = pretrained.load("mlp_family_adam")
    controller = controller.replace(config=controller.config.with_initial_lr(0.01))
    tx = optax.chain(optax.scale_by_adam(), scale_by_controller(controller, total_steps=40))
    task, key = tasks.get_task("regression_2d"), jax.random.key(0)
    r = training.train(
        task, lambda hp: tx, key[None], task.load_data(key), 40, learning_rate_fn=current_lr
    )
    np.testing.assert_allclose(printed, r.test_loss[0, -1], rtol=1e-3)
    start = float(out.split("applied LR: start ")[1].split(",")[0])
    assert 0.01 / 1.25 <= start <= 0.01 * 1.25  # one action of at most x1.25 from --lr


def test_fit_deploys_a_momentum_controller_as_the_momentum(capsys, tmp_path):
    """A saved controller that sets the momentum trains through ``scale_by_layer_controller``
    (with no other momentum before it), only with ``--optimizer momentum``."""
    import jax

    from lrjax.controller import ControllerConfig, init_controller, save_controller

    config = ControllerConfig.loss_only(momentum_control=True, initial_lr=0.01)
    path = save_controller(tmp_path / "m", init_controller(jax.random.key(0), config))
    argv = ["fit", "--task", "regression_2d", "--controller", str(path), "--steps", "20"]
    assert cli.main(argv + ["--optimizer", "momentum", "--eval-every", "20"]) == 0
    assert "final test loss " in capsys.readouterr().out
    assert cli.main(argv + ["--optimizer", "sgd"]) != 0
    assert "expected --optimizer momentum" in capsys.readouterr().err


def test_the_parsers_stabilisers_are_the_configs():
    # spelled out in the parser (no JAX at --help), named once in the config
    from lrjax.algos.actor_critic_config import STABILISERS
    from lrjax.cli.train_options import AC_STABILISERS

    assert AC_STABILISERS == STABILISERS


def test_an_actor_critic_acting_every_k_steps_is_its_own_run_and_older_runs_resume(tmp_path):
    from lrjax._validation import ConfigError
    from lrjax.cli import build_parser
    from lrjax.cli import train as train_cli

    out = tmp_path / "run"
    argv = ["train", "--algo", "actor-critic", "--task", "regression_2d", "--out", str(out)]

    def setup(*flags):
        args = build_parser("train").parse_args([*argv, *flags])
        return args, train_cli._setup(args)

    args, (_, _, algo, signature) = setup()
    assert algo.config.controller.steps_per_action == 1  # Algorithm 1
    # a run saved before the option existed (no steps_per_action) resumes
    old = {k: v for k, v in signature.items() if k != "steps_per_action"}
    out.mkdir()
    (out / "run.json").write_text(json.dumps(old, indent=1, sort_keys=True))
    train_cli._check_run_dir(args, out, signature)
    args, (_, _, algo, signature) = setup("--steps-per-action", "5")
    assert algo.config.controller.steps_per_action == 5
    with pytest.raises(ConfigError, match="steps_per_action"):
        train_cli._check_run_dir(args, out, signature)


def test_train_builds_a_per_layer_momentum_controller_and_refuses_it_for_the_actor_critic(
    tmp_path,
):
    """``--group-features`` and ``--momentum-control`` make the family's controller per layer
    with momentum (every draw then SGD with momentum); both are PPO's options, in the run's
    signature only when given."""
    from lrjax._validation import ConfigError
    from lrjax.cli import build_parser
    from lrjax.cli import train as train_cli

    argv = ["train", "--family", "mixed_mlp", "--out", str(tmp_path / "f")]
    layered = ["--group-features", "group_depth,group_momentum", "--momentum-control"]
    _, _, algo, signature = train_cli._setup(build_parser("train").parse_args(argv + layered))
    config = algo.controller_config
    assert config.group_features == ("group_depth", "group_momentum") and config.momentum_control
    assert algo.family.optimizers == ("momentum",)
    assert signature["momentum_control"] is True
    _, _, plain, old = train_cli._setup(build_parser("train").parse_args(argv))
    assert "group_features" not in old and "momentum_control" not in old
    assert not plain.controller_config.layered
    ac = ["train", "--task", "regression_2d", "--algo", "actor-critic", "--out", str(tmp_path)]
    with pytest.raises(ConfigError, match="--momentum-control is not allowed with --algo"):
        train_cli._setup(build_parser("train").parse_args(ac + ["--momentum-control"]))
