"""Every public class and function of the documented modules has a docstring, and a function's
docstring names each of its arguments (the API reference is generated from them)."""

import importlib
import inspect
import re

import pytest

MODULES = (
    "lrjax.controller",
    "lrjax.features",
    "lrjax.pretrained",
    "lrjax.tasks",
    "lrjax.training",
    "lrjax.baselines",
    "lrjax.data",
    "lrjax.evaluation",
    "lrjax.env",
    "lrjax.algos.ppo",
    "lrjax.algos.family",
    "lrjax.algos.actor_critic",
)


def _public(module):
    names = getattr(module, "__all__", None) or [
        n
        for n, o in vars(module).items()
        if not n.startswith("_") and getattr(o, "__module__", None) == module.__name__
    ]
    return [(n, getattr(module, n)) for n in names]


@pytest.mark.parametrize("name", MODULES)
def test_public_names_are_documented_and_name_their_arguments(name):
    module = importlib.import_module(name)
    undocumented, unnamed = [], []
    for n, obj in _public(module):
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = inspect.getdoc(obj) or ""
        if not doc.strip() or (inspect.isclass(obj) and doc.startswith(f"{n}(")):
            undocumented.append(n)  # a dataclass's or NamedTuple's generated signature
        if inspect.isfunction(obj):
            params = [p.lstrip("*") for p in inspect.signature(obj).parameters]
            missing = [p for p in params if not re.search(rf"\b{re.escape(p)}\b", doc)]
            if missing:
                unnamed.append(f"{n}: {missing}")
    assert not undocumented, undocumented
    assert not unnamed, unnamed
