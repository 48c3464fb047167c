"""The state function chi: what the trainee exposes at a step -> a fixed-size observation vector.

Paper B (Xu et al., "Reinforcement Learning for Learning Rate Control", Eq. 3) writes the state as
``s_t = chi(w_t, X_i)`` and uses the average loss on the current minibatch. Paper A ("Learning an
Adaptive Learning Rate Schedule") observes the training and validation losses, the variance of the
predictions and of their change, the mean and variance of the final layer's weights and the previous
learning rate. Both are expressed here as a :class:`FeatureSpec`: a tuple of named :class:`Feature`
objects, each a small pure function of the *inputs* it declares.

Inputs are named values a training loop provides at a step. The controller transform
(:func:`lrjax.controller.scale_by_controller`) provides some itself and takes the others as keyword
arguments of ``update``:

* ``loss``: the training loss on the current minibatch (``update(..., value=loss)``: optax's
  name for the loss keyword);
* ``val_loss``: a validation loss (``update(..., val_loss=...)``): the mean loss on the first
  ``spec.probe.val_examples`` of a fixed validation batch (:class:`Probe`);
* ``predictions``: the model's outputs on a *fixed* probe batch (``update(..., predictions=...)``),
  exactly as ``spec.probe`` declares: class probabilities (or raw outputs) on the first
  ``spec.probe.examples`` of that batch; :func:`probe_inputs` computes both;
* ``prev_predictions``: the ``predictions`` of the previous observation, kept in the transform
  state;
* ``params``: the ``params`` argument of ``update``;
* ``updates``: the updates the transform receives (e.g. Adam's direction in a chain);
* ``lr``: the learning rate applied at the previous step (float32 scalar);
* ``lr_bounds``: ``(lr_min, lr_max)`` of the controller;
* ``step``: the number of optimizer steps applied so far (int32 scalar);
* ``total_steps``: the number of optimizer steps of the run
  (``scale_by_controller(..., total_steps=...)``);
* ``loss_history``: the run's memory of its losses (:class:`LossHistory`), kept by the loop
  (the transform keeps it in its state) and updated at each observation;
* ``last_layer``: computed from ``params``, the final layer's weights (see
  :func:`find_last_layer` and ``FeatureSpec.last_layer_path``).

Any other name a user-defined feature declares must be passed as a keyword to ``update``. A feature
whose inputs are missing raises a :class:`~lrjax._validation.ConfigError` at trace time that lists
what is missing and what was given: a loop that cannot provide a validation loss is told so, it
never gets a silent zero.

Each raw feature x is turned into an observation entry by

1. ``log(max(x, 1e-12))`` when the feature is marked ``log`` (losses, variances: scale-free, so a
   controller transfers across tasks whose losses differ by orders of magnitude);
2. a normalisation ``(x - mean) / sqrt(var + eps)``, skipped for features marked
   ``normalise=False``. ``FeatureSpec.normaliser`` says which statistics: ``"frozen"``, fixed ones
   gathered across the training episodes (:func:`accumulate`) and carried by the trained
   controller; ``"ema"``, running ones kept in :class:`NormaliserState` and restarted with every
   run (weight ``a_t = max(1 - momentum, 1 / t)``: an exact running average for the first
   ``1 / (1 - momentum)`` observations, an EMA afterwards); or ``"none"``;
3. clipping to ``[-clip, clip]``.

A non-finite raw feature (e.g. the change of predictions at the first step, or a diverged validation
loss) gives the entry 0 and leaves that feature's statistics unchanged.
"""

from lrjax.features.builtin import (
    BUILTIN_FEATURES,
    DERIVED_INPUTS,
    INPUTS,
    LOG_FLOOR,
    LOSS_ONLY_FEATURES,
    LRJAX_FEATURES,
    PAPER_A_FEATURES,
    PAPER_B_FEATURES,
    TRANSFORM_INPUTS,
    Feature,
)
from lrjax.features.flax_inputs import grads_and_feature_inputs
from lrjax.features.history import HISTORY_DECAYS, LossHistory, init_history, update_history
from lrjax.features.inputs import feature_inputs
from lrjax.features.normaliser import (
    NormaliserState,
    accumulate,
    deployed_normaliser,
    init_normaliser,
    normalise,
    observe,
    observe_run,
)
from lrjax.features.probe import PROBE_OUTPUTS, Probe, probe_inputs
from lrjax.features.spec import (
    NORMALISERS,
    FeatureSpec,
    check_inputs,
    find_last_layer,
    raw_features,
    required_inputs,
)

__all__ = [
    "BUILTIN_FEATURES",
    "DERIVED_INPUTS",
    "INPUTS",
    "HISTORY_DECAYS",
    "LOG_FLOOR",
    "LOSS_ONLY_FEATURES",
    "LossHistory",
    "LRJAX_FEATURES",
    "NORMALISERS",
    "PAPER_A_FEATURES",
    "PAPER_B_FEATURES",
    "PROBE_OUTPUTS",
    "Probe",
    "TRANSFORM_INPUTS",
    "Feature",
    "FeatureSpec",
    "NormaliserState",
    "accumulate",
    "check_inputs",
    "deployed_normaliser",
    "feature_inputs",
    "find_last_layer",
    "grads_and_feature_inputs",
    "init_history",
    "init_normaliser",
    "normalise",
    "probe_inputs",
    "observe",
    "observe_run",
    "raw_features",
    "required_inputs",
    "update_history",
]
