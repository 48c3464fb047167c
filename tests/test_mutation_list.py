"""Every mutation of the mutation check still applies: its text occurs exactly once in its file
(a refactor that moves the text would otherwise leave the check testing nothing there)."""

import importlib.util
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "mutation_check", _ROOT / "benchmarks" / "mutation_check.py"
)
mutation_check = importlib.util.module_from_spec(_spec)
sys.modules["mutation_check"] = mutation_check  # its dataclasses look their module up
_spec.loader.exec_module(mutation_check)


@pytest.mark.parametrize("mutation", mutation_check.MUTATIONS, ids=lambda m: m.name)
def test_each_mutation_applies_once_and_changes_the_text(mutation):
    text = (_ROOT / mutation.path).read_text()
    assert text.count(mutation.old) == 1, f"{mutation.name}: {mutation.old!r} in {mutation.path}"
    assert mutation.new != mutation.old
