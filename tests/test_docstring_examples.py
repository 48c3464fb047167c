"""The docstrings' ``>>>`` examples run and print what they show (doctest), in the modules a user
reads first; each named function or method has at least one."""

import doctest
import importlib

import pytest

MODULES = (
    "lrjax.baselines.registry",
    "lrjax.controller.actor",
    "lrjax.controller.applied_lr",
    "lrjax.controller.config",
    "lrjax.controller.diagnostics",
    "lrjax.controller.io",
    "lrjax.controller.layer_transform",
    "lrjax.controller.nonfinite",
    "lrjax.controller.transform",
    "lrjax.features.flax_inputs",
    "lrjax.features.probe",
    "lrjax.pretrained",
    "lrjax.tasks",
)
WITH_EXAMPLES = {  # what a user looks up first: the top-level names and the registries
    "lrjax.baselines.registry.get_optimizer",
    "lrjax.controller.actor.init_controller",
    "lrjax.controller.config.ControllerConfig",
    "lrjax.controller.io.save_controller",
    "lrjax.controller.nonfinite.skip_nonfinite",
    "lrjax.controller.transform.apply_gradients",
    "lrjax.controller.transform.controlled_sgd",
    "lrjax.controller.transform.controller_state",
    "lrjax.controller.applied_lr.current_lr",
    "lrjax.features.flax_inputs.grads_and_feature_inputs",
    "lrjax.tasks.get_task",
    "lrjax.controller.actor.Controller.with_initial_lr",
    "lrjax.controller.actor.Controller.with_lr_bounds",
    "lrjax.controller.diagnostics.diagnostics",
    "lrjax.controller.transform.scale_by_controller",
    "lrjax.controller.layer_transform.scale_by_layer_controller",
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
