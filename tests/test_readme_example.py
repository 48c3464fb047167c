"""The first controller example of the docs' "use a controller in your loop" page runs as written
(it was the README's until the README became the front page)."""

import pathlib
import re

import numpy as np

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "your_loop.md"


def _code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", EXAMPLE.read_text(), flags=re.DOTALL)
    # the one that builds its own controller under skip_nonfinite (test_docs_pages.py runs all)
    examples = [b for b in blocks if "skip_nonfinite" in b and "pretrained" not in b]
    assert len(examples) == 1, f"expected one controller example in {EXAMPLE}"
    return examples[0]


def test_example_is_short():
    lines = [line for line in _code().splitlines() if line.strip()]
    assert 10 <= len(lines) <= 22, len(lines)  # 22 since skip_nonfinite wraps the chain


def test_example_runs_and_trains(capsys):
    namespace = {"__name__": "readme_example"}
    exec(compile(_code(), str(EXAMPLE), "exec"), namespace)
    out = capsys.readouterr().out
    assert re.fullmatch(r"loss \d+\.\d{4}, learning rate \d\.\d\de-\d\d\n", out), out

    jnp, model, x, y = (namespace[k] for k in ("jnp", "model", "x", "y"))
    initial = namespace["model"].init(namespace["jax"].random.key(2), x)
    first = float(jnp.mean((model.apply(initial, x) - y) ** 2))
    assert float(namespace["loss"]) < 0.5 * first

    # An untrained controller (init_controller) applies about its config's initial_lr.
    config = namespace["controller"].config
    lr = np.asarray(namespace["current_lr"](namespace["opt_state"]))
    assert np.float32(config.lr_min) <= lr <= np.float32(config.lr_max)
    np.testing.assert_allclose(lr, config.initial_lr, rtol=0.05)
