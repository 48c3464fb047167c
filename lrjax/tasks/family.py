"""Task families: distributions over trainees, for controllers that must generalize.

A controller trained on one trainee learns that trainee's schedule; one meant for unseen networks
is trained across a *family*, a fresh trainee drawn for each episode or update (the shape of
learned_optimization's task families: ``family.sample(key)`` gives one trainee).

A :class:`~lrjax.tasks.Task` is a frozen description used as a static argument of ``jax.jit``:
every distinct task is its own compiled program. So a family is a *finite* set of variants, a
frozen dataclass listing its axes (datasets, architectures, MLP widths and depths, batch sizes,
budgets, base optimizers), and :meth:`TaskFamily.sample` draws one value per axis with
``jax.random`` from a concrete key, on the host. :meth:`TaskFamily.variants` lists every distinct
task the family can produce (the compiled trainee shapes it can cost; precompile or bound them),
:meth:`TaskFamily.samples` every draw.

What a family varies beyond the trainee travels beside it, in a :class:`TaskSample`: the budget
(trainee steps of a run) and the base optimizer whose direction a controller's learning rate
scales (a name of :data:`OPTIMIZERS`, as ``lrjax.training.controlled_optimizer`` and
``EnvConfig.optimizer`` take it). :class:`~lrjax.tasks.Task` stays what a trainee is.

Datasets load by name, once each: ``family.datasets`` names them, ``family.load_data()`` gives
``{name: Dataset}``, and a sample's data is ``data[sample.task.dataset]``.

The weights are not part of a sample: a trainee's initial params come from the task's own
``init`` with a key of the caller's (e.g. ``k_task, k_init = jax.random.split(key)``), so two
runs of the same variant start from different weights.

Registered families (:data:`FAMILIES`):

===================  ========================================================================
name                 axes
===================  ========================================================================
``image_mlp``        fashion_mnist, mnist; MLP widths 32, 64, 128 x depths 1, 2; batch 64, 128;
                     budgets 400, 800, 1600; sgd, momentum, adam (24 tasks, 216 samples)
``image_mlp_cnn``    the same with LeNet-5 beside the MLPs: the architecture is drawn first,
                     MLP or LeNet-5 with equal probability (28 tasks, 252 samples)
``mixed_mlp``        fashion_mnist, mnist; MLP widths 32, 128 x depths 1, 2; batch 128; budgets
                     400, 1000; sgd, momentum, adam (8 tasks, 48 samples: a CPU-sized family
                     whose every member differs from the held-out trainees ``fashion_mlp``,
                     ``mnist_mlp``, deeper MLPs and the CNNs)
``mixed_mlp_long``   ``mixed_mlp`` with budgets 400, 1000, 2000 (8 tasks, 72 samples): for a
                     controller that acts a fixed number of times per run (``actions_per_run``)
``mixed_mlp_aug``    ``mixed_mlp_long`` with every data variant (none, permuted pixels, noisy
                     labels, a 10% subset) and initial weights scaled by 0.5, 1 or 2 (96 tasks,
                     864 samples): augmentation for a controller meant for unseen trainees
===================  ========================================================================

Augmentation axes (drawn from ``fold_in(key, 1)``, so a family that leaves them at their single
default draws exactly what it drew before they existed): ``data_variants``
(:data:`lrjax.tasks.image.DATA_VARIANTS`), ``init_scales`` (the trainee's initial weights times
the value) and ``loss_scales`` (its training loss times the value). ``mixed_mlp_aug`` leaves the
loss scale at 1: under SGD and momentum a loss scale is an LR scale, which every family episode
already draws (its start spread), and under Adam it cancels.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrjax import models
from lrjax._validation import ConfigError, check_positive, check_positive_int, fail
from lrjax.data import DATASETS, get_spec, load_dataset
from lrjax.tasks.base import Task
from lrjax.tasks.image import DATA_VARIANTS, SUBSET_FRACTION, ImageClassificationTask

OPTIMIZERS = ("sgd", "momentum", "adam")
"""The base optimizers a family can draw: the names ``lrjax.training.controlled_optimizer``
takes (SGD, heavy-ball momentum 0.9, Adam's direction), whose step a controller's LR scales."""

ARCHITECTURES = ("mlp", "lenet5")
"""The models an image family can draw: ``"mlp"`` (:class:`~lrjax.models.MLP`, one hidden layer
of each drawn width per drawn depth) and ``"lenet5"`` (:class:`~lrjax.models.LeNet5`, the small
CNN; widths and depths do not apply to it)."""


@dataclasses.dataclass(frozen=True)
class TaskSample:
    """One draw of a family: the trainee and how a run trains it.

    Attributes:
      task: the trainee (its ``name`` identifies the variant, e.g.
        ``fashion_mnist/mlp-64x2/b128``).
      budget: trainee steps of a run.
      optimizer: the base optimizer, a name of :data:`OPTIMIZERS`.
    """

    task: Task
    budget: int
    optimizer: str

    @property
    def name(self) -> str:
        """The draw in a table: the task's name, the optimizer and the budget, e.g.
        ``fashion_mnist/mlp-64x2/b128/adam/800steps``."""
        return f"{self.task.name}/{self.optimizer}/{self.budget}steps"


class TaskFamily:
    """Interface of a family of trainees (module doc). Subclasses are frozen dataclasses.

    Every family names its datasets (:attr:`datasets`, loaded once each by :meth:`load_data`),
    enumerates what it can draw (:meth:`samples`, and the distinct tasks in them:
    :meth:`variants`) and draws one (:meth:`sample`).
    """

    name: str
    datasets: tuple[str, ...]

    def samples(self) -> tuple[TaskSample, ...]:
        """Every draw the family can make, each once (a finite set)."""
        raise NotImplementedError

    def variants(self) -> tuple[Task, ...]:
        """The distinct tasks of :meth:`samples`, in their order: the trainee programs a run
        over the family compiles at most (budgets and optimizers do not change the task)."""
        return tuple(dict.fromkeys(s.task for s in self.samples()))

    def sample(self, key: jax.Array) -> TaskSample:
        """The draw of ``key`` (a concrete key: sampling happens on the host, outside jit)."""
        raise NotImplementedError

    def load_data(self, *, data_dir: str | None = None, **kwargs) -> dict[str, Any]:
        """``{dataset name: data}`` for every dataset of :attr:`datasets`, each loaded once
        (``data_dir`` and ``kwargs`` go to :func:`lrjax.data.load_dataset`)."""
        return {name: load_dataset(name, data_dir=data_dir, **kwargs) for name in self.datasets}


# The axes of an image family, in the order a key draws them.
_IMAGE_AXES = (
    "datasets",
    "architectures",
    "widths",
    "depths",
    "batch_sizes",
    "budgets",
    "optimizers",
)
# Augmentation axes, drawn from fold_in(key, 1) (module doc).
_AUGMENTATION_AXES = ("data_variants", "init_scales", "loss_scales")


@dataclasses.dataclass(frozen=True)
class ImageClassificationFamily(TaskFamily):
    """Image classifiers (:class:`~lrjax.tasks.ImageClassificationTask`) over a grid of axes.

    :meth:`sample` draws every axis uniformly and independently from the key: the dataset, the
    architecture, an MLP's width and depth (ignored when the architecture is a CNN), the batch
    size, the budget and the optimizer. Every axis is a non-empty tuple of distinct values.

    Attributes:
      name: registry name.
      datasets: image datasets (names of :data:`lrjax.data.DATASETS`).
      architectures: names of :data:`ARCHITECTURES`.
      widths: an MLP's hidden width.
      depths: an MLP's number of hidden layers.
      batch_sizes: training minibatch sizes (each at most every dataset's training split).
      budgets: trainee steps of a run.
      optimizers: base optimizers, names of :data:`OPTIMIZERS`.
      data_variants: names of :data:`lrjax.tasks.image.DATA_VARIANTS`.
      init_scales: factors of the trainee's initial weights (each > 0).
      loss_scales: factors of the trainee's training loss (each > 0).
    """

    name: str
    datasets: tuple[str, ...] = ("fashion_mnist",)
    architectures: tuple[str, ...] = ("mlp",)
    widths: tuple[int, ...] = (64,)
    depths: tuple[int, ...] = (1,)
    batch_sizes: tuple[int, ...] = (128,)
    budgets: tuple[int, ...] = (400,)
    optimizers: tuple[str, ...] = ("sgd",)
    data_variants: tuple[str, ...] = ("none",)
    init_scales: tuple[float, ...] = (1.0,)
    loss_scales: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            fail("name", self.name, "expected a non-empty string")
        choices = {
            "datasets": tuple(DATASETS),
            "architectures": ARCHITECTURES,
            "optimizers": OPTIMIZERS,
            "data_variants": DATA_VARIANTS,
        }
        for axis in _IMAGE_AXES + ("data_variants",):
            values = _check_axis(axis, getattr(self, axis), choices.get(axis))
            object.__setattr__(self, axis, values)
        for axis in ("init_scales", "loss_scales"):
            object.__setattr__(self, axis, _check_scales(axis, getattr(self, axis)))
        for dataset in self.datasets:  # a batch larger than a split fails before loading
            spec = get_spec(dataset)
            examples = spec.train_size - spec.validation_size
            if "subset" in self.data_variants:
                examples = int(examples * SUBSET_FRACTION)
            if max(self.batch_sizes) > examples:
                fail(
                    "batch_sizes",
                    self.batch_sizes,
                    f"expected sizes of at most {examples}, the examples of {dataset}'s "
                    "training split",
                )

    def _task(
        self,
        dataset: str,
        architecture: str,
        width: int,
        depth: int,
        batch_size: int,
        variant: str = "none",
        init_scale: float = 1.0,
        loss_scale: float = 1.0,
    ):
        """The variant of these axis values; its name says them, e.g.
        ``fashion_mnist/mlp-64x2/b128`` (width 64, 2 hidden layers) or ``mnist/lenet5/b64``,
        then any augmentation that is not the default, e.g. ``.../b128/permuted/init2``."""
        if architecture == "mlp":
            model, label = models.MLP(hidden=(width,) * depth), f"mlp-{width}x{depth}"
        else:
            model, label = models.LeNet5(conv_impl="xla"), architecture
        name = f"{dataset}/{label}/b{batch_size}"
        name += f"/{variant}" if variant != "none" else ""
        name += f"/init{init_scale:g}" if init_scale != 1.0 else ""
        name += f"/loss{loss_scale:g}" if loss_scale != 1.0 else ""
        return ImageClassificationTask(
            name,
            dataset,
            model,
            batch_size,
            variant=variant,
            init_scale=init_scale,
            loss_scale=loss_scale,
        )

    def _augmentations(self) -> list[tuple[str, float, float]]:
        return list(itertools.product(self.data_variants, self.init_scales, self.loss_scales))

    def _models(self) -> list[tuple[str, int, int]]:
        """``(architecture, width, depth)`` of each distinct model (a CNN's once)."""
        out = []
        for arch in self.architectures:
            if arch == "mlp":
                out += [(arch, w, d) for w in self.widths for d in self.depths]
            else:
                out.append((arch, self.widths[0], self.depths[0]))
        return out

    def samples(self) -> tuple[TaskSample, ...]:
        tasks = [
            self._task(dataset, arch, width, depth, batch_size, *augmentation)
            for dataset in self.datasets
            for arch, width, depth in self._models()
            for batch_size in self.batch_sizes
            for augmentation in self._augmentations()
        ]
        return tuple(
            TaskSample(task, budget, opt)
            for task, budget, opt in itertools.product(tasks, self.budgets, self.optimizers)
        )

    def sample(self, key: jax.Array) -> TaskSample:
        if isinstance(key, jax.core.Tracer):
            raise ConfigError(
                "key is traced: a family samples on the host (its tasks are static arguments "
                "of jit); call sample outside jit with a concrete key."
            )
        sizes = jnp.asarray([len(getattr(self, axis)) for axis in _IMAGE_AXES])
        index = np.asarray(jax.random.randint(key, (len(_IMAGE_AXES),), 0, sizes))
        pick = {
            axis: getattr(self, axis)[int(i)] for axis, i in zip(_IMAGE_AXES, index, strict=True)
        }
        sizes = jnp.asarray([len(getattr(self, axis)) for axis in _AUGMENTATION_AXES])
        index = np.asarray(jax.random.randint(jax.random.fold_in(key, 1), (len(sizes),), 0, sizes))
        for axis, i in zip(_AUGMENTATION_AXES, index, strict=True):
            pick[axis] = getattr(self, axis)[int(i)]
        task = self._task(
            pick["datasets"],
            pick["architectures"],
            pick["widths"],
            pick["depths"],
            pick["batch_sizes"],
            pick["data_variants"],
            pick["init_scales"],
            pick["loss_scales"],
        )
        return TaskSample(task, pick["budgets"], pick["optimizers"])


def _check_axis(field: str, values: Any, choices: tuple[str, ...] | None) -> tuple:
    """``values`` as a tuple, refused unless a non-empty sequence of distinct entries, each
    one of ``choices`` (names) or, when ``choices`` is None, an integer >= 1."""
    if choices is None:
        allowed = "expected a non-empty tuple of distinct integers >= 1"
    else:
        allowed = "expected a non-empty tuple of distinct names among " + ", ".join(
            repr(c) for c in choices
        )

    def valid(value) -> bool:
        if choices is not None:
            return isinstance(value, str) and value in choices
        try:
            check_positive_int(field, value)
        except ConfigError:
            return False
        return True

    if (
        not isinstance(values, (tuple, list))
        or not values
        or not all(map(valid, values))
        or len(set(values)) != len(values)
    ):
        fail(field, values, allowed)
    return tuple(values) if choices is not None else tuple(int(v) for v in values)


def _check_scales(field: str, values: Any) -> tuple[float, ...]:
    """``values`` as a tuple of floats, refused unless a non-empty sequence of distinct finite
    numbers > 0."""
    if not isinstance(values, (tuple, list)) or not values or len(set(values)) != len(values):
        fail(field, values, "expected a non-empty tuple of distinct numbers > 0")
    for value in values:
        check_positive(field, value)
    return tuple(float(v) for v in values)


IMAGE_MLP = ImageClassificationFamily(
    name="image_mlp",
    datasets=("fashion_mnist", "mnist"),
    architectures=("mlp",),
    widths=(32, 64, 128),
    depths=(1, 2),
    batch_sizes=(64, 128),
    budgets=(400, 800, 1600),
    optimizers=OPTIMIZERS,
)

IMAGE_MLP_CNN = dataclasses.replace(IMAGE_MLP, name="image_mlp_cnn", architectures=ARCHITECTURES)

MIXED_MLP = ImageClassificationFamily(
    name="mixed_mlp",
    datasets=("fashion_mnist", "mnist"),
    architectures=("mlp",),
    widths=(32, 128),
    depths=(1, 2),
    batch_sizes=(128,),
    budgets=(400, 1000),
    optimizers=OPTIMIZERS,
)

MIXED_MLP_LONG = dataclasses.replace(MIXED_MLP, name="mixed_mlp_long", budgets=(400, 1000, 2000))

MIXED_MLP_AUG = dataclasses.replace(
    MIXED_MLP_LONG, name="mixed_mlp_aug", data_variants=DATA_VARIANTS, init_scales=(0.5, 1.0, 2.0)
)

FAMILIES: dict[str, TaskFamily] = {
    f.name: f for f in (IMAGE_MLP, IMAGE_MLP_CNN, MIXED_MLP, MIXED_MLP_LONG, MIXED_MLP_AUG)
}


def get_family(name: str, **overrides) -> TaskFamily:
    """The registered family ``name``, with ``overrides`` replacing some of its axes (e.g.
    ``get_family("image_mlp", datasets=("mnist",))``).

    Raises:
      ConfigError: for an unknown name (listing the known ones), an unknown field or a bad
        value.
    """
    if not isinstance(name, str) or name not in FAMILIES:
        raise ConfigError(f"family={name!r} is not known: expected one of {', '.join(FAMILIES)}.")
    try:
        return dataclasses.replace(FAMILIES[name], **overrides)
    except TypeError as e:
        raise ConfigError(f"family {name!r} does not take these options: {overrides} ({e}).") from e
