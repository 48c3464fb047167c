"""User mistakes and the error each gets (issue 13, reliability): one place that lists them.

Every mistake, through the CLI (``lrjax.cli.main``) or the Python API, must get an error that
names what was wrong (the flag or field and its value) and what to do, exit with code 2 from the
CLI with one ``error:`` line and no traceback, and change nothing on disk: the files under the
test's folder (which is also the working directory and ``$LRJAX_DATA_DIR``) are byte for byte
and time for time the same afterwards. Each is refused within seconds, before any training
runs, so the module takes seconds.

``CLI_MISTAKES`` and ``API_MISTAKES`` are the tables (a read-only folder is tested through a
process without root's power over file permissions when the tests run as root); a dataset
nobody prepared on a machine without network, and two settings that must be accepted, have
tests of their own below.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _params import numpy_params

from lrjax import cli, evaluation, pretrained, tasks, training
from lrjax._validation import ConfigError
from lrjax.algos.actor_critic import ActorCriticConfig
from lrjax.algos.ppo import PPOConfig
from lrjax.baselines import get_optimizer
from lrjax.checkpoint import Checkpointer
from lrjax.controller import (
    Controller,
    ControllerConfig,
    controlled_sgd,
    init_actor_params,
    load_controller,
    save_controller,
    scale_by_controller,
)
from lrjax.data import catalog, load_dataset
from lrjax.data.cache import FORMAT_VERSION as CACHE_FORMAT_VERSION
from lrjax.env import EnvConfig
from lrjax.features import Probe, init_normaliser

# ----------------------------------------------------------------------------------------------
# What the mistakes are made of: files a user might have (built small, in the test's folder).

SMALL = ControllerConfig.paper_b(lstm_layers=1, lstm_units=4)


def _controller(config=SMALL):
    """A controller with numpy-drawn params (jax's initialisers compile slowly on CPU)."""
    params = numpy_params(init_actor_params, jax.random.key(0), config)
    return Controller(config=config, params=params, normaliser=init_normaliser(config.obs_size))


def saved_controller(tmp: Path) -> Path:
    return save_controller(tmp / "c", _controller())


def _edit_metadata(path: Path, **changes) -> None:
    meta = json.loads((path / "metadata.json").read_text())
    for key, value in changes.items():
        if key.startswith("config."):
            meta["config"][key.removeprefix("config.")] = value
        elif value is None:
            del meta[key]
        else:
            meta[key] = value
    (path / "metadata.json").write_text(json.dumps(meta))


def _cut(path: Path) -> None:
    """A copy cut short (an interrupted download or copy)."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def controller_truncated_params(tmp):
    _cut(saved_controller(tmp) / "params.msgpack")


def controller_truncated_metadata(tmp):
    _cut(saved_controller(tmp) / "metadata.json")


def controller_version_99(tmp):
    _edit_metadata(saved_controller(tmp), format_version=99)


def controller_without_config(tmp):
    _edit_metadata(saved_controller(tmp), config=None)


def controller_units_as_text(tmp):
    _edit_metadata(saved_controller(tmp), **{"config.lstm_units": "4"})


def controller_lr_min_as_text(tmp):
    _edit_metadata(saved_controller(tmp), **{"config.lr_min": "abc"})


def controller_other_features(tmp):
    """The metadata of a controller over two features, the params of one over one."""
    path = saved_controller(tmp)
    meta = json.loads((path / "metadata.json").read_text())
    meta["config"]["features"]["features"] = ["train_loss", "log_lr"]
    (path / "metadata.json").write_text(json.dumps(meta))


def cache(tmp, name="fashion_mnist", stored_as=None, train=20, **arrays) -> Path:
    """A small decoded-array cache of ``name`` (metadata saying ``stored_as``, default name)."""
    path = catalog.cache_path(name, tmp / "data")
    path.parent.mkdir(parents=True, exist_ok=True)
    good = {
        "train_images": np.zeros((train, 28, 28, 1), np.uint8),
        "train_labels": np.arange(train, dtype=np.int32) % 10,
        "test_images": np.zeros((10, 28, 28, 1), np.uint8),
        "test_labels": np.arange(10, dtype=np.int32),
    }
    good.update(arrays)
    meta = {"format_version": CACHE_FORMAT_VERSION, "name": stored_as or name}
    np.savez(path, meta=np.array(json.dumps(meta)), **good)
    return path


def cache_truncated(tmp):
    _cut(cache(tmp, train=6000))


def cache_wrong_arrays(tmp):
    cache(tmp, train_images=np.zeros((20, 32, 32, 3), np.float32))


def cache_labels_out_of_range(tmp):
    cache(tmp, test_labels=np.arange(10, dtype=np.int32) + 5)


def cache_too_small(tmp):
    cache(tmp)  # 20 training examples: the default validation split (5,000) leaves none


def cache_of_another_dataset(tmp):
    cache(tmp, stored_as="mnist")  # mnist's arrays copied to fashion_mnist.npz


def raw_files_missing(tmp):
    (tmp / "raw").mkdir()
    for name in catalog._MNIST_FILES[:2]:
        (tmp / "raw" / name).write_bytes(b"\x1f\x8b not the real file")


def raw_files_corrupted(tmp):
    (tmp / "raw").mkdir()
    for name in catalog._MNIST_FILES:
        (tmp / "raw" / name).write_bytes(b"\x1f\x8b not the real file")


def out_is_a_file(tmp):
    (tmp / "f").write_text("notes")


def finished_run(tmp):
    """``run/``: a finished 12-update run as ``lrjax train --task regression_2d`` leaves it (its
    ``run.json``, 12 metrics rows, a checkpoint at update 12), made without training it."""
    from lrjax.cli import build_parser
    from lrjax.cli import train as train_cli

    out = tmp / "run"
    args = build_parser("train").parse_args(["train", *R2D, "--updates", "12", "--out", str(out)])
    signature = train_cli._setup(args)[3]
    checkpointer = Checkpointer(out / "checkpoints")
    checkpointer.save(12, {"updates_done": jnp.asarray(12, jnp.int32)})
    checkpointer.close()
    (out / "run.json").write_text(json.dumps(signature, indent=1, sort_keys=True))
    rows = [json.dumps({"update": i + 1, "episode_return": 0.9}) + "\n" for i in range(12)]
    (out / "metrics.jsonl").write_text("".join(rows))


def finished_run_of_the_old_cli(tmp):
    """``finished_run`` with the ``run.json`` of lrjax before ``--preset``: the preset under
    ``features``."""
    finished_run(tmp)
    path = tmp / "run" / "run.json"
    saved = json.loads(path.read_text())
    saved["features"] = saved.pop("preset")
    path.write_text(json.dumps(saved, indent=1, sort_keys=True))


def tuning_not_json(tmp):
    (tmp / "tuning.json").write_text("{'task': 'mlp'}")


def tuning_of_another_shape(tmp):
    (tmp / "tuning.json").write_text(json.dumps({"task": "mlp", "best_lr": 0.1}))


def read_only_folder(tmp):
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)


# ----------------------------------------------------------------------------------------------
# The CLI: (setup, argv, what the error must say); "{tmp}" is the test's folder.

R2D = ["--task", "regression_2d"]
TRAIN = ["train", *R2D, "--out", "{tmp}/out"]
EVAL = ["evaluate", "--tasks", "regression_2d", "--seeds", "2", "--out", "{tmp}/e"]
EVAL_CONTROLLER = [*EVAL, "--controller", "{tmp}/c"]
FIT_DATA = ["fit", "--task", "mlp", "--steps", "2", "--data-dir", "{tmp}/data"]
REPREPARE = "lrjax data prepare fashion_mnist --overwrite"

CLI_MISTAKES = [
    # unknown names
    pytest.param(None, ["train", "--task", "imagenet"], "invalid choice: 'imagenet'", id="task"),
    pytest.param(None, ["train", "--algo", "sac"], "--algo: invalid choice: 'sac'", id="algo"),
    pytest.param(None, ["train", "--preset", "paper_c"], "invalid choice: 'paper_c'", id="preset"),
    pytest.param(
        None,
        [*TRAIN, "--features", "train_loss,lr"],
        "--features='lr' is not allowed",
        id="feature",
    ),
    pytest.param(  # --features picked the preset before --preset existed
        None,
        [*TRAIN, "--features", "paper_b"],
        ("--features='paper_b' is not allowed", "--preset paper_b"),
        id="preset-as-features",
    ),
    pytest.param(
        None,
        [*TRAIN, "--state", "train_loss"],
        ("--state was renamed --features", "--features train_loss"),
        id="state-renamed",
    ),
    pytest.param(
        None, ["fit", "--optimizer", "adamw2"], "--optimizer: invalid choice", id="fit-optimizer"
    ),
    pytest.param(
        None,
        ["baselines", *R2D, "--optimizers", "sgd,adamw2"],
        "optimizer='adamw2' is not known",
        id="baselines-optimizer",
    ),
    pytest.param(
        None, ["baselines", *R2D, "--optimizers", ","], "--optimizers=','", id="no-optimizers"
    ),
    pytest.param(
        None, [*EVAL, "--tasks", "mnist_vit"], "--tasks='mnist_vit' is not known", id="eval-task"
    ),
    pytest.param(
        None,
        [*EVAL, "--baselines", "constant,cosine"],
        ("--baselines=", "'cosine' is not a baseline"),
        id="eval-baseline",
    ),
    pytest.param(None, ["data", "prepare", "imagenet"], "invalid choice: 'imagenet'", id="dataset"),
    # impossible values, by the flag's name (not PPOConfig's num_updates ...)
    pytest.param(None, [*TRAIN, "--updates", "0"], "--updates=0 is not allowed", id="updates-0"),
    pytest.param(
        None, [*TRAIN, "--updates", "-3"], "--updates=-3 is not allowed", id="updates-negative"
    ),
    pytest.param(None, [*TRAIN, "--num-envs", "0"], "--num-envs=0 is not allowed", id="num-envs-0"),
    pytest.param(None, [*TRAIN, "--horizon", "0"], "--horizon=0 is not allowed", id="horizon-0"),
    pytest.param(
        None, [*TRAIN, "--seed", "-1"], "--seed=-1 is not allowed", id="train-seed-negative"
    ),
    pytest.param(None, [*TRAIN, "--updates-per-chunk", "0"], "--updates-per-chunk=0", id="chunk-0"),
    pytest.param(None, ["fit", *R2D, "--steps", "0"], "--steps=0 is not allowed", id="fit-steps-0"),
    pytest.param(None, ["fit", *R2D, "--eval-every", "0"], "--eval-every=0", id="fit-eval-every-0"),
    pytest.param(None, ["fit", *R2D, "--lr", "0"], "--lr=0.0 is not allowed", id="fit-lr-0"),
    pytest.param(
        None,
        ["fit", *R2D, "--controller", "fashion_mlp_ppo"],
        ("reads more than the training loss", "loss-only controllers"),
        id="fit-controller-needs-predictions",
    ),
    pytest.param(
        None,
        ["fit", *R2D, "--controller", "mlp_family_sgd", "--optimizer", "prodigy"],
        "--optimizer='prodigy' cannot be scaled by a controller",
        id="fit-controller-over-prodigy",
    ),
    pytest.param(
        None,
        ["fit", *R2D, "--controller", "mlp_family_sgd", "--lr", "-1"],
        "--lr=-1.0 is not allowed",
        id="fit-controller-lr-negative",
    ),
    pytest.param(
        None, ["baselines", *R2D, "--seeds", "0"], "--seeds=0 is not allowed", id="seeds-0"
    ),
    pytest.param(
        None,
        ["baselines", *R2D, "--eval-every", "0"],
        "--eval-every=0 is not allowed",
        id="baselines-eval-every-0",  # was taken silently as the default
    ),
    pytest.param(
        None,
        ["baselines", *R2D, "--lrs", "abc"],
        ("--lrs='abc'", "comma-separated numbers"),
        id="lrs-abc",
    ),
    pytest.param(
        None, ["baselines", *R2D, "--lrs", "0.1,-1"], "learning_rate=-1.0", id="lrs-negative"
    ),
    pytest.param(None, [*EVAL, "--seeds", "1"], "--seeds=1 is not allowed", id="eval-seeds-1"),
    pytest.param(
        None, [*EVAL, "--seed", "-5"], "--seed=-5 is not allowed", id="eval-seed-negative"
    ),
    pytest.param(None, [*EVAL, "--tune-seeds", "-1"], "--tune-seeds=-1", id="tune-seeds-negative"),
    pytest.param(None, [*EVAL, "--test-every", "7"], "divisor of --horizon", id="test-every"),
    pytest.param(
        None,
        [*TRAIN, "--lr-min", "0.5", "--lr-max", "0.1"],
        "--lr-min=0.5 must be smaller than --lr-max=0.1",
        id="lr-min-above-max",
    ),
    pytest.param(
        None,
        [*TRAIN, "--lr-min", "0.1", "--lr-max", "0.1"],
        "--lr-min=0.1 must be smaller",
        id="lr-min-equals-max",
    ),
    pytest.param(None, [*TRAIN, "--lr-min", "0"], "--lr-min=0.0 is not allowed", id="lr-min-0"),
    pytest.param(None, [*TRAIN, "--alpha", "1"], "--alpha=1.0 is not allowed", id="alpha-1"),
    pytest.param(
        None, [*TRAIN, "--initial-lr", "5"], "--initial-lr=5.0 is not allowed", id="initial-lr"
    ),
    pytest.param(
        None,
        [*TRAIN, "--batch-size", "5000"],
        ("--batch-size=5000 is larger", "at most 1000"),
        id="batch-above-split",
    ),
    pytest.param(
        None,
        ["train", "--task", "fashion_mlp", "--batch-size", "60000", "--out", "{tmp}/out"],
        "(55000 examples)",
        id="batch-above-dataset-split",  # refused before loading the data
    ),
    pytest.param(None, [*TRAIN, "--eval-episodes", "-1"], "--eval-episodes=-1", id="eval-episodes"),
    pytest.param(
        None,
        [*TRAIN, "--algo", "actor-critic", "--eval-episodes", "3"],
        "--eval-episodes is not allowed with --algo actor-critic",
        id="eval-episodes-actor-critic",
    ),
    pytest.param(
        None, [*TRAIN, "--gamma", "0.5"], "--gamma is not allowed with --algo ppo", id="other-algo"
    ),
    # output folders
    pytest.param(
        out_is_a_file,
        [*TRAIN, "--out", "{tmp}/f"],
        ("--out=", "is a file", "choose another --out"),
        id="train-out-file",
    ),
    pytest.param(
        out_is_a_file,
        ["baselines", *R2D, "--out", "{tmp}/f"],
        "is a file",
        id="baselines-out-file",
    ),
    pytest.param(out_is_a_file, [*EVAL, "--out", "{tmp}/f"], "is a file", id="evaluate-out-file"),
    pytest.param(
        out_is_a_file,
        [*TRAIN, "--out", "{tmp}/f/run"],
        "is below the file",
        id="out-below-a-file",
    ),
    pytest.param(
        read_only_folder,
        [*TRAIN, "--out", "{tmp}/ro/run"],
        "is not writable",
        id="out-read-only",
    ),
    pytest.param(
        read_only_folder,
        ["data", "prepare", "mnist", "--data-dir", "{tmp}/ro/data"],
        ("--data-dir=", "is not writable"),
        id="data-dir-read-only",
    ),
    pytest.param(
        finished_run,
        [*TRAIN, "--updates", "4", "--out", "{tmp}/run"],
        ("--updates=4 is not allowed", "12 updates done", "--updates 12"),
        id="fewer-updates-than-done",
    ),
    # a run in --out made with other settings (run.json): refused, naming what differs
    *[
        pytest.param(
            finished_run,
            [*TRAIN, "--updates", "12", *flags, "--out", "{tmp}/run"],
            ("holds a different run", differs),
            id=f"resume-with-other-{flags[0][2:]}",
        )
        for flags, differs in [
            (["--num-envs", "4"], "num_envs: 16 there, 4 now"),
            (["--preset", "paper_b"], "preset: 'lrjax' there, 'paper_b' now"),
            (["--horizon", "7"], "horizon: 40 there, 7 now"),
            (["--lr-min", "0.001"], "lr_min: None there, 0.001 now"),
            (["--reward", "val_loss"], "reward: 'loss_decrement' there, 'val_loss' now"),
            (["--algo", "actor-critic"], "algo: 'ppo' there, 'actor-critic' now"),
        ]
    ],
    pytest.param(  # the old run.json's keys are read as what they were
        finished_run_of_the_old_cli,
        [*TRAIN, "--updates", "12", "--preset", "paper_b", "--out", "{tmp}/run"],
        ("holds a different run (preset: 'lrjax' there, 'paper_b' now)",),
        id="resume-old-run-with-other-preset",
    ),
    # data: caches and raw files
    pytest.param(cache_truncated, FIT_DATA, ("truncated", REPREPARE), id="cache-truncated"),
    pytest.param(
        cache_wrong_arrays, FIT_DATA, ("train_images of float32", REPREPARE), id="cache-arrays"
    ),
    pytest.param(cache_labels_out_of_range, FIT_DATA, ("in [5, 14]", REPREPARE), id="cache-labels"),
    pytest.param(
        cache_too_small, FIT_DATA, ("holds 20 training examples", REPREPARE), id="cache-small"
    ),
    pytest.param(
        cache_of_another_dataset,
        FIT_DATA,
        ("dataset 'mnist', not 'fashion_mnist'", REPREPARE),
        id="cache-of-another-dataset",
    ),
    pytest.param(
        None,
        ["data", "prepare", "mnist", "--raw-dir", "{tmp}/nowhere", "--data-dir", "{tmp}/d"],
        ("--raw-dir=", "is not a directory", "original files"),
        id="raw-dir-missing",
    ),
    pytest.param(
        raw_files_missing,
        ["data", "prepare", "mnist", "--raw-dir", "{tmp}/raw", "--data-dir", "{tmp}/d"],
        ("lacks 't10k-images-idx3-ubyte.gz'", "download it from https://"),
        id="raw-file-missing",
    ),
    pytest.param(
        raw_files_corrupted,
        ["data", "prepare", "mnist", "--raw-dir", "{tmp}/raw", "--data-dir", "{tmp}/d"],
        ("failed its checksum", "download it again"),
        id="raw-file-checksum",
    ),
    # saved controllers
    pytest.param(None, EVAL_CONTROLLER, "No saved controller at", id="controller-missing"),
    pytest.param(
        controller_truncated_params,
        EVAL_CONTROLLER,
        "does not match the checksum",
        id="controller-truncated-params",
    ),
    pytest.param(
        controller_truncated_metadata,
        EVAL_CONTROLLER,
        "metadata.json' is not valid JSON",
        id="controller-truncated-metadata",
    ),
    pytest.param(
        controller_version_99,
        EVAL_CONTROLLER,
        ("format_version=99", "upgrade lrjax"),
        id="controller-format-version",
    ),
    pytest.param(
        controller_without_config,
        EVAL_CONTROLLER,
        ("config", "is malformed", "re-save"),
        id="controller-without-config",
    ),
    pytest.param(
        controller_units_as_text,
        EVAL_CONTROLLER,
        "lstm_units='4' is not allowed",
        id="controller-field-type",
    ),
    pytest.param(
        controller_lr_min_as_text,
        EVAL_CONTROLLER,
        "lr_min='abc' is not allowed",
        id="controller-lr-type",
    ),
    pytest.param(
        controller_other_features,
        EVAL_CONTROLLER,
        ("params do not fit", "2 features", "save the"),
        id="controller-other-feature-spec",
    ),
    # tuning files
    pytest.param(
        None,
        [*EVAL, "--tuning", "{tmp}/tuning.json"],
        ("--tuning=", "No such file"),
        id="tuning-missing",
    ),
    pytest.param(
        tuning_not_json, [*EVAL, "--tuning", "{tmp}/tuning.json"], "--tuning=", id="tuning-not-json"
    ),
    pytest.param(
        tuning_of_another_shape,
        [*EVAL, "--tuning", "{tmp}/tuning.json"],
        "'baselines' is None",
        id="tuning-shape",
    ),
]


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: kind, size, modification time and content hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mtime_ns, digest)
    return out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    """The test's folder, also the working directory and the data root; no raw files, and no
    download host (a proxy on a closed local port): nothing can be prepared or downloaded."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LRJAX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LRJAX_RAW_DIR", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, proxy)
    yield tmp_path
    for p in tmp_path.rglob("*"):  # a read-only folder would stop pytest's clean-up
        if p.is_dir():
            p.chmod(0o755)


def _as_user(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``lrjax ARGV`` run by root in a process without root's power to ignore file permissions
    (skipped where that cannot be arranged)."""
    setpriv = shutil.which("setpriv")
    drop = [setpriv, "--bounding-set=-dac_override,-dac_read_search"] if setpriv else None
    if drop is None or subprocess.run([*drop, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root, which ignores file permissions (and setpriv is unavailable)")
    code = "import sys\nfrom lrjax.cli import main\nsys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [*drop, sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=cwd
    )
    return result.returncode, result.stdout, result.stderr


def run_cli(argv: list[str], capsys, cwd: Path, read_only: bool = False) -> tuple[int, str, str]:
    """``lrjax ARGV``: (exit code, stdout, stderr); argparse's usage errors exit with 2 too."""
    if read_only and os.geteuid() == 0:
        return _as_user(argv, cwd)
    try:
        code = cli.main(argv)
    except SystemExit as e:  # argparse: "lrjax COMMAND: error: ..."
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_clear_error(code: int, out: str, err: str, expected) -> None:
    """Exit code 2, one ``error:`` line naming the mistake, no traceback."""
    expected = (expected,) if isinstance(expected, str) else expected
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("lrjax")]
    assert errors and ": error: " in errors[-1], err
    for text in expected:
        assert text in err, (text, err)


@pytest.mark.parametrize("setup, argv, expected", CLI_MISTAKES)
def test_cli_mistake_is_a_clear_error_that_changes_nothing(setup, argv, expected, tmp, capsys):
    if setup is not None:
        setup(tmp)
    before = _snapshot(tmp)
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    start = time.perf_counter()
    code, out, err = run_cli(argv, capsys, tmp, read_only=setup is read_only_folder)
    assert_clear_error(code, out, err, expected)
    assert time.perf_counter() - start < 20  # refused before any training or preparation
    assert _snapshot(tmp) == before


# ----------------------------------------------------------------------------------------------
# The Python API: (setup, call, the error's type, what it must say).


def _update(controller, predictions_shape=None, total_steps=None, **inputs):
    """One ``update`` of ``scale_by_controller(controller)`` on a 3-parameter model."""
    tx = scale_by_controller(
        controller, predictions_shape=predictions_shape, total_steps=total_steps
    )
    params = {"w": jnp.ones(3)}
    return tx.update(params, tx.init(params), params, **inputs)


def _probing(config, examples=2):
    """``config`` observing raw outputs of ``examples`` validation examples."""
    probe = Probe(examples=examples, outputs="raw")
    return config.replace(features=dataclasses.replace(config.features, probe=probe))


PAPER_A = _controller(_probing(ControllerConfig.paper_a(lstm_layers=1, lstm_units=4)))
LRJAX = _controller(_probing(ControllerConfig.lrjax(lstm_layers=1, lstm_units=4)))
PAPER_A_DEFAULT_PROBE = _controller(ControllerConfig.paper_a(lstm_layers=1, lstm_units=4))
OTHER_FEATURES = ControllerConfig.paper_b(
    lstm_layers=1, lstm_units=4, features=("train_loss", "log_lr")
)
SMALL_CONTROLLER = _controller()

API_MISTAKES = [
    # unknown names
    pytest.param(
        None,
        lambda t: tasks.get_task("imagenet"),
        ConfigError,
        "task='imagenet' is not known",
        id="task",
    ),
    pytest.param(
        None,
        lambda t: tasks.get_task(["fashion_mlp"]),
        ConfigError,
        "task=['fashion_mlp'] is not known",
        id="notebook-task-as-list",  # was TypeError: unhashable type: 'list'
    ),
    pytest.param(
        None, lambda t: get_optimizer("adamw2"), ConfigError, "optimizer='adamw2'", id="optimizer"
    ),
    pytest.param(
        None,
        lambda t: ControllerConfig(features=("loss",)),
        ConfigError,
        "features='loss' is not allowed",
        id="feature",
    ),
    pytest.param(
        None,
        lambda t: ControllerConfig(action_mode="relative"),
        ConfigError,
        "action_mode='relative'",
        id="action-mode",
    ),
    pytest.param(
        None, lambda t: EnvConfig(reward="accuracy"), ConfigError, "reward='accuracy'", id="reward"
    ),
    pytest.param(
        None,
        lambda t: ActorCriticConfig(mode="offline"),
        ConfigError,
        "mode='offline'",
        id="ac-mode",
    ),
    pytest.param(
        None,
        lambda t: load_dataset("imagenet"),
        ConfigError,
        "dataset='imagenet' is not known",
        id="dataset",
    ),
    pytest.param(
        None,
        lambda t: pretrained.load("fashion_ppo"),
        ConfigError,
        "'fashion_ppo' is not known",
        id="pretrained",
    ),
    # impossible values
    pytest.param(
        None,
        lambda t: ControllerConfig(lr_min=0.1, lr_max=0.01),
        ConfigError,
        "lr_min=0.1 must be smaller than lr_max=0.01",
        id="lr-min-above-max",
    ),
    pytest.param(
        None,
        lambda t: ControllerConfig(steps_per_action=0),
        ConfigError,
        "steps_per_action=0",
        id="steps-per-action-0",
    ),
    pytest.param(
        None,
        lambda t: EnvConfig(horizon=0),
        ConfigError,
        "horizon=0 is not allowed",
        id="horizon-0",
    ),
    pytest.param(
        None,
        lambda t: PPOConfig(num_envs=0),
        ConfigError,
        "num_envs=0 is not allowed",
        id="num-envs-0",
    ),
    pytest.param(
        None, lambda t: ActorCriticConfig(gamma=1.5), ConfigError, "gamma=1.5", id="gamma"
    ),
    pytest.param(
        None,
        lambda t: tasks.get_task("mlp", batch_size=10**6),
        ConfigError,
        "batch_size=1000000 is larger than the split",
        id="batch-above-split",  # before loading
    ),
    pytest.param(
        None,
        lambda t: training.train(tasks.get_task("regression_2d"), None, None, None, 0),
        ConfigError,
        "num_steps=0 is not allowed",
        id="train-steps-0",
    ),
    pytest.param(
        None,
        lambda t: load_dataset("mnist", validation_size=60_000),
        ConfigError,
        "validation_size=60000 leaves no training data",
        id="validation-size",
    ),
    # notebook parameters of the wrong type
    pytest.param(
        None,
        lambda t: PPOConfig(num_envs=8, num_updates="4"),
        ConfigError,
        "num_updates='4' is not allowed: expected an integer",
        id="notebook-updates-as-text",
    ),
    pytest.param(
        None,
        lambda t: controlled_sgd(LRJAX, predictions_shape=(2,), total_steps="400"),
        ConfigError,
        "total_steps='400' is not allowed",
        id="notebook-steps-as-text",
    ),
    pytest.param(
        None,
        lambda t: evaluation.evaluate(["regression_2d"], None, ["constant"], seeds="2"),
        ConfigError,
        "seeds='2' is not allowed",
        id="notebook-seeds-as-text",
    ),
    pytest.param(
        None,
        lambda t: evaluation.evaluate(["regression_2d"], [PAPER_A], seeds=2),
        ConfigError,
        "expected a mapping name -> Controller",
        id="controllers-as-list",  # was a TypeError
    ),
    pytest.param(
        None,
        lambda t: evaluation.read_tuning({"task": "mlp", "best_lr": 0.1}),
        ConfigError,
        "'baselines' is None",
        id="tuning-shape",  # was a KeyError
    ),
    # data caches
    pytest.param(
        None,
        lambda t: load_dataset("mnist", data_dir=t / "data", prepare=False),
        FileNotFoundError,
        "lrjax data prepare mnist",
        id="cache-missing",
    ),
    pytest.param(
        cache_truncated,
        lambda t: load_dataset("fashion_mnist", data_dir=t / "data", prepare=False),
        ConfigError,
        REPREPARE,
        id="cache-truncated",
    ),
    pytest.param(
        cache_labels_out_of_range,
        lambda t: load_dataset("fashion_mnist", data_dir=t / "data", validation_size=5),
        ConfigError,
        "test_labels in [5, 14]",
        id="cache-labels",
    ),
    # saved controllers
    pytest.param(
        controller_version_99,
        lambda t: load_controller(t / "c"),
        ConfigError,
        "format_version=99",
        id="controller-format-version",
    ),
    pytest.param(
        controller_truncated_params,
        lambda t: load_controller(t / "c"),
        ConfigError,
        "checksum",
        id="controller-truncated",
    ),
    pytest.param(
        controller_other_features,
        lambda t: load_controller(t / "c"),
        ConfigError,
        "'lstm_0/if/kernel' has shape (1, 4), expected (2, 4)",
        id="controller-other-feature-spec",
    ),
    # the optax transform
    pytest.param(
        None,
        lambda t: _update(PAPER_A, predictions_shape=(2,), value=1.0),
        ConfigError,
        "Missing feature inputs: 'val_loss' needed by val_loss",
        id="transform-missing-val-loss",
    ),
    pytest.param(
        None,
        lambda t: _update(SMALL_CONTROLLER),
        ConfigError,
        "needs the training loss: call update",
        id="transform-missing-value",
    ),
    pytest.param(
        None,
        lambda t: _update(PAPER_A, value=1.0),
        ConfigError,
        "predictions_shape=None",
        id="transform-missing-predictions-shape",
    ),
    pytest.param(
        None,
        # the whole validation batch's logits, where it observes 32 examples' probabilities
        lambda t: _update(PAPER_A_DEFAULT_PROBE, predictions_shape=(128, 10), value=1.0),
        ConfigError,
        "so predictions have a leading axis of 32; lrjax.features.probe_inputs",
        id="transform-predictions-of-another-probe",
    ),
    pytest.param(
        None,
        lambda t: _update(LRJAX, predictions_shape=(2,), value=1.0),
        ConfigError,
        "total_steps=None is not allowed",
        id="transform-missing-total-steps",
    ),
    pytest.param(
        None,
        lambda t: _update(
            PAPER_A, predictions_shape=(2,), value=1.0, val_loss=1.0, predictions=jnp.ones(3)
        ),
        ConfigError,
        "predictions of shape (3,) do not match",
        id="transform-predictions-shape",
    ),
    pytest.param(
        None,
        lambda t: _update(SMALL_CONTROLLER, value=jnp.ones(4)),
        ConfigError,
        "value of shape (4,) is not allowed",
        id="transform-loss-not-scalar",
    ),
    pytest.param(
        None,
        lambda t: scale_by_controller("fashion_mlp_ppo"),
        ConfigError,
        "expected a lrjax Controller",
        id="transform-name-not-controller",
    ),
    pytest.param(
        None,
        lambda t: _update(
            Controller(OTHER_FEATURES, SMALL_CONTROLLER.params, init_normaliser(2)), value=1.0
        ),
        ConfigError,
        "params do not fit",
        id="transform-other-feature-spec",  # was a flax error
    ),
]


@pytest.mark.parametrize("setup, call, error, expected", API_MISTAKES)
def test_api_mistake_is_a_clear_error_that_changes_nothing(setup, call, error, expected, tmp):
    if setup is not None:
        setup(tmp)
    before = _snapshot(tmp)
    with pytest.raises(error) as info:
        call(tmp)
    assert expected in str(info.value)
    assert _snapshot(tmp) == before


def test_the_module_lists_at_least_45_mistakes():
    assert len(CLI_MISTAKES) + len(API_MISTAKES) >= 45


# ----------------------------------------------------------------------------------------------
# Mistakes with scaffolding of their own.


def test_missing_dataset_without_network_fails_fast_saying_how_to_prepare(tmp, capsys):
    """No cache, no raw files, no download host: the loader's preparation subprocess gives up
    within seconds (not tfds's minutes of retries), says which files to fetch and the command
    to run, and leaves no temporary files."""
    start = time.perf_counter()
    code, out, err = run_cli(["fit", "--task", "mlp", "--steps", "2"], capsys, tmp)
    assert time.perf_counter() - start < 60
    assert_clear_error(code, out, err, ("cannot prepare fashion_mnist", "no raw files were given"))
    assert "train-images-idx3-ubyte.gz" in err
    assert f"lrjax data prepare fashion_mnist --raw-dir {tmp / 'data' / 'raw'}" in err
    assert _snapshot(tmp) == {}  # no data folder, no download, no temporary file


def test_lr_bounds_given_without_initial_lr_are_valid(tmp, capsys):
    """``--lr-min 0.5 --lr-max 10`` was refused (the preset's initial LR 0.1 lay outside); the
    preset's initial LR now moves into the bounds given."""
    from lrjax.cli import build_parser
    from lrjax.cli import train as train_cli

    argv = ["train", *R2D, "--lr-min", "0.5", "--lr-max", "10", "--out", str(tmp / "out")]
    args = build_parser("train").parse_args(argv)
    train_cli._out_dir(args)
    _, env, _, _ = train_cli._setup(args)  # everything checked before training: accepted
    controller = env.config.controller
    assert (controller.lr_min, controller.lr_max, controller.initial_lr) == (0.5, 10.0, 0.5)
    assert ControllerConfig.lrjax(lr_min=0.5, lr_max=10).initial_lr == 0.5
    assert ControllerConfig.paper_b(lr_max=1e-3).initial_lr == 1e-3
    assert ControllerConfig.lrjax(initial_lr=0.2).initial_lr == 0.2  # bounds not changed
    with pytest.raises(ConfigError, match="initial_lr=5.0"):  # one given is still checked
        ControllerConfig.lrjax(lr_min=0.5, lr_max=2.0, initial_lr=5.0)
    assert _snapshot(tmp) == {}


def test_eval_episodes_zero_skips_the_comparison_and_is_valid(tmp):
    """``--eval-episodes 0`` once failed after training; it now means "skip the comparison"
    (``make demo`` uses it), so it passes the checks; -1 is refused (CLI_MISTAKES)."""
    from lrjax.cli import build_parser
    from lrjax.cli import train as train_cli

    argv = ["train", *R2D, "--eval-episodes", "0", "--out", str(tmp / "out")]
    args = build_parser("train").parse_args(argv)
    train_cli._out_dir(args)
    train_cli._setup(args)
    assert args.eval_episodes == 0 and _snapshot(tmp) == {}
