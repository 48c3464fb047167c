"""Task families (:mod:`lrjax.tasks.family`): draws reproducible from the key and spread over
every axis, a finite set of variants as large as the axes imply, sampled trainees that compute
a loss on real data and start from their own weights, bad families refused by name."""

import dataclasses

import jax
import numpy as np
import pytest

from lrjax import tasks, training
from lrjax._validation import ConfigError
from lrjax.tasks import family as family_lib

KEYS = jax.random.split(jax.random.key(0), 32)

# One MLP and the CNN on MNIST at batch 64: the cheapest variants of the mixed family.
CHEAP = dict(datasets=("mnist",), widths=(32,), depths=(1,), batch_sizes=(64,))


@pytest.mark.parametrize("name", sorted(tasks.FAMILIES))
def test_the_same_key_draws_the_same_sample(name):
    family = tasks.get_family(name)
    for key in KEYS[:8]:
        a, b = family.sample(key), family.sample(key)
        assert a == b and hash(a) == hash(b) and a.task == b.task and a.name == b.name
    raw = jax.random.PRNGKey(3)  # raw uint32 keys draw too, the same way every time
    assert family.sample(raw) == family.sample(raw)


def _axis_values(samples):
    """What each axis took in ``samples``, read back from the tasks and samples."""
    mlps = [s.task.model.hidden for s in samples if s.task.name.split("/")[1].startswith("mlp")]
    return {
        "datasets": {s.task.dataset for s in samples},
        "architectures": {s.task.name.split("/")[1].split("-")[0] for s in samples},
        "widths": {h[0] for h in mlps},
        "depths": {len(h) for h in mlps},
        "batch_sizes": {s.task.batch_size for s in samples},
        "budgets": {s.budget for s in samples},
        "optimizers": {s.optimizer for s in samples},
        "data_variants": {s.task.variant for s in samples},
        "init_scales": {s.task.init_scale for s in samples},
        "loss_scales": {s.task.loss_scale for s in samples},
    }


@pytest.mark.parametrize("name", sorted(tasks.FAMILIES))
def test_keys_spread_over_every_axis_and_every_draw_is_a_variant(name):
    family = tasks.get_family(name)
    drawn = [family.sample(k) for k in KEYS]
    assert len({s.task for s in drawn}) > 1
    for axis, values in _axis_values(drawn).items():
        declared = getattr(family, axis)
        assert values <= set(declared), axis
        assert len(values) > 1 or len(declared) == 1, (axis, values)
    everything, variants = set(family.samples()), set(family.variants())
    assert all(s in everything and s.task in variants for s in drawn)


def test_variants_are_finite_and_as_many_as_the_axes_imply():
    mlp = tasks.get_family("image_mlp")
    # 2 datasets x (3 widths x 2 depths) x 2 batch sizes; x 3 budgets x 3 optimizers
    assert len(mlp.variants()) == 2 * 3 * 2 * 2 == 24
    assert len(mlp.samples()) == 24 * 3 * 3
    mixed = tasks.get_family("image_mlp_cnn")
    assert len(mixed.variants()) == 2 * (3 * 2 + 1) * 2 == 28  # LeNet-5 has no width or depth
    assert len(mixed.samples()) == 28 * 3 * 3
    small = tasks.get_family("image_mlp_cnn", **CHEAP)
    assert [t.name for t in small.variants()] == ["mnist/mlp-32x1/b64", "mnist/lenet5/b64"]
    for family in (mlp, mixed):
        names = [t.name for t in family.variants()]
        assert len(set(names)) == len(names)  # a name identifies its variant
        assert len(set(family.samples())) == len(family.samples())
    assert "fashion_mnist/mlp-64x2/b128" in [t.name for t in mlp.variants()]
    assert mlp.datasets == ("fashion_mnist", "mnist")


def test_augmentation_axes_leave_the_draws_of_families_without_them_as_they_were():
    # Drawn from fold_in(key, 1): mixed_mlp_long (the shipped controllers' family) draws what it
    # drew before the axes existed (these names were printed by the code before them).
    family = tasks.get_family("mixed_mlp_long")
    assert [family.sample(jax.random.key(i)).name for i in range(4)] == [
        "mnist/mlp-32x2/b128/sgd/400steps",
        "fashion_mnist/mlp-32x2/b128/sgd/1000steps",
        "mnist/mlp-128x2/b128/adam/1000steps",
        "mnist/mlp-128x1/b128/adam/2000steps",
    ]
    aug = tasks.get_family("mixed_mlp_aug")
    # the same trainee, budget and optimizer; an augmentation on top
    for i in range(4):
        plain, augmented = family.sample(jax.random.key(i)), aug.sample(jax.random.key(i))
        assert (plain.budget, plain.optimizer) == (augmented.budget, augmented.optimizer)
        assert augmented.task.name.startswith(plain.task.name)
        assert plain.task == dataclasses.replace(
            augmented.task, name=plain.task.name, variant="none", init_scale=1.0
        )
    # 8 MLPs x 4 data variants x 3 initial scales; x 3 budgets x 3 optimizers
    assert len(aug.variants()) == 8 * 4 * 3 == 96 and len(aug.samples()) == 96 * 9
    names = [t.name for t in aug.variants()]
    assert len(set(names)) == len(names)
    assert "mnist/mlp-128x2/b128/noisy_labels/init0.5" in names
    assert aug.loss_scales == (1.0,)


def test_a_sampled_task_computes_a_finite_loss_on_real_data(mnist):
    family = tasks.get_family("image_mlp_cnn", **CHEAP)
    data = {"mnist": mnist}  # what family.load_data() gives, loaded once by the fixture
    seen = set()
    for key in KEYS[:8]:
        sample = family.sample(key)
        if sample.task in seen:
            continue
        seen.add(sample.task)
        task = sample.task
        params = task.init(jax.random.key(1), data[task.dataset])
        loss = float(task.loss(params, data[task.dataset], jax.random.key(2)))
        assert np.isfinite(loss) and 1.0 < loss < 4.0, (task.name, loss)  # near ln 10 at init
        tx = training.controlled_optimizer(sample.optimizer, 0.01)  # the name the trainers take
        assert tx.init(params) is not None
    assert len(seen) == 2


def test_trainees_of_different_keys_start_from_different_weights():
    family = tasks.get_family("image_mlp", **CHEAP)  # one variant: every key draws it
    starts = []
    for key in KEYS[:3]:
        k_task, k_init = jax.random.split(key)
        task = family.sample(k_task).task
        assert task == family.variants()[0]
        starts.append(task.output_weights(task.init(k_init)))
    assert not np.allclose(starts[0], starts[1]) and not np.allclose(starts[1], starts[2])
    k_init = jax.random.split(KEYS[0])[1]
    np.testing.assert_array_equal(starts[0], task.output_weights(task.init(k_init)))


def test_load_data_loads_each_dataset_once(monkeypatch):
    calls = []
    monkeypatch.setattr(family_lib, "load_dataset", lambda name, **kw: calls.append(name) or name)
    assert tasks.get_family("image_mlp").load_data() == {
        "fashion_mnist": "fashion_mnist",
        "mnist": "mnist",
    }
    assert calls == ["fashion_mnist", "mnist"]


def test_optimizers_are_the_trainers_base_optimizers():
    assert set(family_lib.OPTIMIZERS) <= set(training.CONTROLLED_OPTIMIZERS)


def test_unknown_family_and_bad_fields_name_what_is_allowed():
    with pytest.raises(
        ConfigError, match="family='imagenet' is not known.*image_mlp, image_mlp_cnn"
    ):
        tasks.get_family("imagenet")
    bad = [
        (dict(widths=(32, 0)), r"widths=\(32, 0\) is not allowed: expected .* integers >= 1"),
        (dict(depths=()), r"depths=\(\) is not allowed"),
        (dict(budgets=(400, 400)), r"budgets=\(400, 400\) is not allowed: .*distinct"),
        (dict(datasets="mnist"), r"datasets='mnist' is not allowed: .*'fashion_mnist'"),
        (dict(datasets=("svhn",)), r"datasets=\('svhn',\) is not allowed: .*'mnist'"),
        (dict(architectures=("vit",)), r"architectures=\('vit',\) .*'mlp', 'lenet5'"),
        (dict(optimizers=("lion",)), r"optimizers=\('lion',\) .*'sgd', 'momentum', 'adam'"),
        (dict(batch_sizes=(64, 60_000)), r"batch_sizes=\(64, 60000\) .* at most 55000"),
        (dict(depth=2), "does not take these options"),
        (dict(data_variants=("rotated",)), r"data_variants=\('rotated',\) .*'permuted'"),
        (dict(init_scales=(0.0, 1.0)), r"init_scales=0.0 is not allowed: .*> 0"),
        (dict(loss_scales=()), r"loss_scales=\(\) is not allowed: .*distinct numbers > 0"),
        (
            dict(data_variants=("none", "subset"), batch_sizes=(6000,)),
            r"batch_sizes=\(6000,\) .* at most 5500",
        ),
    ]
    for overrides, message in bad:
        with pytest.raises(ConfigError, match=message):
            tasks.get_family("image_mlp", **overrides)
    with pytest.raises(ConfigError, match="name='' is not allowed"):
        tasks.ImageClassificationFamily(name="")
    lists = tasks.get_family("image_mlp", widths=[32, 64])  # a list is taken as a tuple
    assert lists.widths == (32, 64) and hash(lists) == hash(
        tasks.get_family("image_mlp", widths=(32, 64))
    )


def test_sampling_a_traced_key_is_refused():
    family = tasks.get_family("image_mlp")
    with pytest.raises(ConfigError, match="key is traced"):
        jax.jit(lambda k: family.sample(k).budget)(KEYS[0])


def test_a_familys_variants_are_tasks_by_name_and_a_familys_name_expands_to_them():
    """``get_task`` takes a variant's name (the same trainee the family draws) and refuses
    options for it; ``expand_task_names`` replaces a family's name by its variants' names and
    leaves task names alone; the held-out deeper MLP is a registered task."""
    family = tasks.get_family("mixed_mlp")
    names = [t.name for t in family.variants()]
    assert len(names) == 8 and all(
        tasks.get_task(n) == t for n, t in zip(names, family.variants(), strict=True)
    )
    assert tasks.expand_task_names(["fashion_mlp", "mixed_mlp", "mnist_mlp"]) == [
        "fashion_mlp",
        *names,
        "mnist_mlp",
    ]
    assert tasks.expand_task_names(["mixed_mlp", names[0]]) == names  # duplicates dropped
    with pytest.raises(ConfigError, match="does not take options"):
        tasks.get_task(names[0], batch_size=32)
    with pytest.raises(ConfigError, match="task='mnist/mlp-7x1/b128' is not known: .*family"):
        tasks.get_task("mnist/mlp-7x1/b128")
    deep = tasks.get_task("fashion_mlp_4x64")
    assert deep.model.hidden == (64, 64, 64, 64) and deep.batch_size == 128
    depths = {len(t.model.hidden) for f in tasks.FAMILIES.values() for t in f.variants()
              if hasattr(t.model, "hidden")}  # fmt: skip
    assert max(depths) < 4  # deeper than any family MLP: held out
