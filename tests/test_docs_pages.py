"""The documentation's code runs as written: every python block of the pages a user copies
from, each page's blocks in order in one namespace, as a reader runs them."""

import os
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
RAW_FASHION = DOCS.parents[1] / "shared" / "data" / "fashion_mnist"


def _blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.DOTALL)


def _run(page: str, capsys) -> str:
    namespace = {"__name__": page}
    for code in _blocks(page):
        exec(compile(code, str(DOCS / page), "exec"), namespace)
    return capsys.readouterr().out


def test_every_loop_on_the_your_loop_page_trains(capsys):
    out = _run("your_loop.md", capsys)
    for name in ("TrainState", "nnx"):
        match = re.search(rf"{name}: loss (\d+\.\d+), learning rate ([\d.e+-]+)", out)
        assert match, out
        assert float(match.group(1)) < 0.5  # sin-sum regression: the untrained net is at 1.7
    assert "MultiSteps: controller steps 2" in out, out


def test_the_own_model_page_trains_with_the_pretrained_controller(capsys, monkeypatch):
    """Own Flax model, data read from the raw IDX files, ``probe_inputs``: the page a user
    writes their loop from. The untrained MLP starts at ln(10) = 2.3."""
    if not RAW_FASHION.is_dir() and "FASHION_MNIST_DIR" not in os.environ:
        pytest.skip(f"the raw Fashion-MNIST files are not at {RAW_FASHION}")
    monkeypatch.setenv("FASHION_MNIST_DIR", os.environ.get("FASHION_MNIST_DIR", str(RAW_FASHION)))
    out = _run("own_model.md", capsys)
    assert "predictions = class probabilities (softmax of the logits) on its first 32" in out
    match = re.search(r"test loss (\d+\.\d+), LR ([\d.e+-]+) -> ([\d.e+-]+), skipped (\d+)", out)
    assert match, out
    loss, first_lr, last_lr, skipped = match.groups()
    assert float(loss) < 0.6 and first_lr != last_lr and skipped == "0"
