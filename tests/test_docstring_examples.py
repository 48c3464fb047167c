"""The docstrings' ``>>>`` examples run and print what they show (doctest), in the modules a user
reads first; each named function or method has at least one."""

import doctest
import importlib

import pytest

MODULES = (
    "lrjax.controller.actor",
    "lrjax.controller.diagnostics",
    "lrjax.controller.transform",
    "lrjax.features.probe",
    "lrjax.pretrained",
)
WITH_EXAMPLES = {
    "lrjax.controller.actor.Controller.with_initial_lr",
    "lrjax.controller.actor.Controller.with_lr_bounds",
    "lrjax.controller.diagnostics.diagnostics",
    "lrjax.controller.transform.scale_by_controller",
    "lrjax.features.probe.probe_inputs",
    "lrjax.pretrained.load",
}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0, results
    named = {t.name for t in tests}
    assert {n for n in WITH_EXAMPLES if n.startswith(name + ".")} <= named, named
