"""Trainees as pure functions: a model, its data, a minibatch loss and evaluation metrics.

The interface is :mod:`lrjax.tasks.base`; the image classifiers are in :mod:`~lrjax.tasks.image`
and paper B's regression in :mod:`~lrjax.tasks.regression`; this module is the registry.
Families of tasks (distributions over trainees, to train controllers that generalize) are in
:mod:`~lrjax.tasks.family`, with their registry :data:`FAMILIES` (:func:`get_family`).

A :class:`Task` is a frozen (hashable) description; its methods are pure and jittable, and they
vmap over keys (many trainees at once). Data is passed explicitly as a pytree argument
(:class:`lrjax.data.Dataset` for images, :class:`RegressionData` for the 2-D problem), never
closed over, so compiled programs stay small.

Registered tasks (:data:`TASKS`):

====================  =============  ===================================================  =====
name                  dataset        model                                                batch
====================  =============  ===================================================  =====
``mnist_cnn``         mnist          paper B: TF "Deep MNIST" CNN (32, 64 conv; 1024)     50
``cifar10_cnn``       cifar10        paper B: TF CIFAR-10 CNN (64, 64 conv; 384, 192)     128
``fashion_cnn``       fashion_mnist  paper A (model unspecified): LeNet-5 style           128
``fashion_resnet``    fashion_mnist  CIFAR-style ResNet-20, GroupNorm                     128
``cifar10_resnet``    cifar10        CIFAR-style ResNet-20, GroupNorm                     128
``mlp``               fashion_mnist  MLP 256-256                                          128
``fashion_mlp``       fashion_mnist  MLP 64: lrjax's RL training task (RESULTS.md)        128
``mnist_mlp``         mnist          MLP 64 at paper B's minibatch                        50
``fashion_mlp_4x64``  fashion_mnist  MLP 64-64-64-64: held out, deeper than any family's  128
``regression_2d``     synthetic      paper B section 4.3: linear regression, w in R^2     10
====================  =============  ===================================================  =====

A family's variants are tasks too: :func:`get_task` takes their names (e.g.
``fashion_mnist/mlp-32x2/b128``, :meth:`TaskFamily.variants`), and :func:`expand_task_names`
turns a family's name into its variants' names, so ``lrjax evaluate --tasks mixed_mlp`` runs on
every trainee of the family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lrjax import models
from lrjax._validation import ConfigError, check_choice
from lrjax.data import get_spec
from lrjax.data.arrays import check_batch_size
from lrjax.models.layers import CONV_IMPLS
from lrjax.tasks.base import Metrics, Params, Task, grad_chunks
from lrjax.tasks.family import (
    FAMILIES,
    ImageClassificationFamily,
    TaskFamily,
    TaskSample,
    get_family,
)
from lrjax.tasks.image import ImageClassificationTask
from lrjax.tasks.regression import Regression2DTask, RegressionData

__all__ = [
    "FAMILIES",
    "TASKS",
    "ImageClassificationFamily",
    "ImageClassificationTask",
    "Metrics",
    "Params",
    "Regression2DTask",
    "RegressionData",
    "Task",
    "TaskFactory",
    "TaskFamily",
    "TaskSample",
    "expand_task_names",
    "get_family",
    "get_task",
    "grad_chunks",
]


TaskFactory = Callable[..., Task]


def _image_task(name, dataset, model_fn, batch_size):
    def factory(*, conv_impl: str | None = None, batch_size: int = batch_size, **model_kwargs):
        impl = conv_impl or "xla"
        check_choice("conv_impl", impl, CONV_IMPLS)
        spec = get_spec(dataset)  # a batch larger than the training split fails before loading
        check_batch_size(batch_size, spec.train_size - spec.validation_size)
        return ImageClassificationTask(name, dataset, model_fn(impl, **model_kwargs), batch_size)

    return factory


TASKS: dict[str, TaskFactory] = {
    "mnist_cnn": _image_task(
        "mnist_cnn", "mnist", lambda impl, **kw: models.MnistCNN(conv_impl=impl, **kw), 50
    ),
    "cifar10_cnn": _image_task(
        "cifar10_cnn", "cifar10", lambda impl, **kw: models.Cifar10CNN(conv_impl=impl, **kw), 128
    ),
    "fashion_cnn": _image_task(
        "fashion_cnn", "fashion_mnist", lambda impl, **kw: models.LeNet5(conv_impl=impl, **kw), 128
    ),
    "fashion_resnet": _image_task(
        "fashion_resnet",
        "fashion_mnist",
        lambda impl, **kw: models.ResNet(conv_impl=impl, **kw),
        128,
    ),
    "cifar10_resnet": _image_task(
        "cifar10_resnet", "cifar10", lambda impl, **kw: models.ResNet(conv_impl=impl, **kw), 128
    ),
    "mlp": _image_task("mlp", "fashion_mnist", lambda impl, **kw: models.MLP(**kw), 128),
    "fashion_mlp": _image_task(
        "fashion_mlp",
        "fashion_mnist",
        lambda impl, hidden=(64,), **kw: models.MLP(hidden=hidden, **kw),
        128,
    ),
    # MNIST with paper B's minibatch of 50 on a cheap trainee: paper B's comparison at notebook
    # scale on a CPU (mnist_cnn is the paper's own, ~20x slower here).
    "mnist_mlp": _image_task(
        "mnist_mlp",
        "mnist",
        lambda impl, hidden=(64,), **kw: models.MLP(hidden=hidden, **kw),
        50,
    ),
    # Held out from every family (issue 26's protocol): deeper than any family MLP.
    "fashion_mlp_4x64": _image_task(
        "fashion_mlp_4x64",
        "fashion_mnist",
        lambda impl, hidden=(64, 64, 64, 64), **kw: models.MLP(hidden=hidden, **kw),
        128,
    ),
    "regression_2d": lambda **kw: Regression2DTask(**kw),
}


def get_task(name: str, **overrides) -> Task:
    """The registered task ``name``, with ``overrides`` (batch_size, conv_impl, model sizes).

    Args:
      name: a key of :data:`TASKS` or a family variant's name.
      overrides: the task's own fields to replace (not allowed for a family variant).

    Raises:
      ConfigError: for an unknown name (listing the known ones) or a bad override.

    Example:

    >>> task = get_task("mnist_mlp", batch_size=128)
    >>> task.name, task.batch_size
    ('mnist_mlp', 128)
    """
    if isinstance(name, str) and name not in TASKS:
        variant = _family_variants().get(name)
        if variant is not None:
            if overrides:
                raise ConfigError(
                    f"task {name!r} does not take options ({overrides}): it is a family's "
                    "variant, fixed by its name."
                )
            return variant
    if not isinstance(name, str) or name not in TASKS:
        raise ConfigError(
            f"task={name!r} is not known: expected one of {', '.join(TASKS)}, or a task "
            "family's variant (lrjax.tasks.FAMILIES[...].variants(), e.g. "
            f"{next(iter(_family_variants()))!r})."
        )
    try:
        return TASKS[name](**overrides)
    except TypeError as e:
        raise ConfigError(f"task {name!r} does not take these options: {overrides} ({e}).") from e


def _family_variants() -> dict[str, Task]:
    """Every registered family's variants by name (a name means one trainee in every family)."""
    return {t.name: t for family in FAMILIES.values() for t in family.variants()}


def expand_task_names(names: Sequence[str]) -> list[str]:
    """``names`` with each registered family's name replaced by its variants' names (in the
    family's order), duplicates dropped; task names pass through unchanged (unknown ones are
    :func:`get_task`'s to refuse)."""
    out: list[str] = []
    for name in names:
        if name in FAMILIES and name not in TASKS:
            out += [t.name for t in FAMILIES[name].variants()]
        else:
            out.append(name)
    return list(dict.fromkeys(out))
