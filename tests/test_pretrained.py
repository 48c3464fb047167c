"""The shipped controller: listed, loadable in one call, with its model card, and usable in a
plain optax loop (the README's pretrained example, run as written)."""

import pathlib
import re

import numpy as np
import pytest

import lrjax
from lrjax._validation import ConfigError

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_shipped_controller_loads_with_its_card():
    assert "fashion_mlp_ppo" in lrjax.pretrained.available()
    controller = lrjax.pretrained.load("fashion_mlp_ppo")
    config = controller.config
    assert config.features.normaliser == "frozen" and "progress" in config.features.names
    # Frozen statistics from training: thousands of observations per feature, not fresh ones.
    assert np.all(np.asarray(controller.normaliser.count) > 1000)
    card = lrjax.pretrained.model_card("fashion_mlp_ppo")
    assert "lrjax train" in card and "lrjax evaluate" in card and "| method |" in card
    with pytest.raises(ConfigError, match="'nope' is not known"):
        lrjax.pretrained.load("nope")


def test_readme_pretrained_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (code,) = [b for b in blocks if "lrjax.pretrained.load" in b and "controlled_sgd" in b]
    namespace = {"__name__": "readme_pretrained"}
    exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    match = re.search(r"test loss (\d+\.\d+), LR ([\d.e+-]+) -> ([\d.e+-]+)", out)
    assert match, out
    loss, first_lr, last_lr = (float(g) for g in match.groups())
    assert loss < 0.7  # the untrained MLP starts at ln(10) = 2.3
    assert first_lr != last_lr  # the controller moved the LR
