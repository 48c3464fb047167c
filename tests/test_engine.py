"""The execution policy: one set of knobs and one device rule for trainees and episodes."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrjax import engine, tasks
from lrjax._validation import ConfigError


def test_backend_defaults():
    conv = engine.resolve(None, uses_conv=True, num_steps=100, backend="cpu")
    assert (conv.chunk_size, conv.unroll, conv.batching) == (10, 10, "map")
    assert (conv.conv_impl, conv.eval_conv_impl) == ("patches", "xla")
    dense = engine.resolve(None, uses_conv=False, num_steps=100, backend="cpu")
    assert (dense.chunk_size, dense.unroll, dense.batching) == (100, 4, "vmap")
    vmapped = engine.resolve(
        engine.EngineConfig(batching="vmap"), uses_conv=True, num_steps=100, backend="cpu"
    )
    assert vmapped.eval_conv_impl == "patches"  # vmapped XLA convolutions are grouped on CPU
    assert conv.num_devices == len(jax.local_devices())
    assert (conv.grad_chunk, dense.grad_chunk) == (128, None)
    assert conv.train_task(_lenet(1000)).grad_chunk == 128
    whole = engine.resolve(engine.EngineConfig(grad_chunk=1000), uses_conv=True, num_steps=1)
    assert tasks.grad_chunks(1000, whole.train_task(_lenet(1000)).grad_chunk) == 1


def test_cpu_training_convolution_follows_the_model():
    """The ResNets train with XLA's convolution on CPU (faster for their many-channel 3x3
    convolutions), the LeNet-style CNNs with patches; vmapped items always with patches
    (CPU runs vmapped XLA convolutions grouped); a config that names one wins."""
    resnet, lenet = tasks.get_task("fashion_resnet"), _lenet(64)
    assert (resnet.cpu_conv_impl, lenet.cpu_conv_impl) == ("xla", "patches")

    def impl(task, config=None, backend="cpu"):
        eng = engine.resolve(
            config,
            uses_conv=True,
            cpu_conv_impl=task.cpu_conv_impl,
            num_steps=10,
            backend=backend,
        )
        return eng.train_task(task).model.conv_impl

    assert (impl(resnet), impl(lenet)) == ("xla", "patches")
    assert impl(resnet, engine.EngineConfig(batching="vmap")) == "patches"
    assert impl(resnet, engine.EngineConfig(conv_impl="patches")) == "patches"
    assert impl(lenet, engine.EngineConfig(conv_impl="xla")) == "xla"
    with pytest.raises(ConfigError, match="cpu_conv_impl='fft'"):
        engine.resolve(None, uses_conv=True, cpu_conv_impl="fft", num_steps=1)


def _lenet(batch_size):
    return tasks.get_task("fashion_cnn", batch_size=batch_size)


def test_one_device_rule():
    one = engine.resolve(None, uses_conv=False, num_steps=1, num_items=1)
    assert one.num_devices == 1
    two = engine.resolve(None, uses_conv=False, num_steps=1, num_items=5)
    assert two.num_devices == min(2, len(jax.local_devices()))
    assert two.padded(5) == 5 + (5 % two.num_devices)
    capped = engine.resolve(engine.EngineConfig(devices=1), uses_conv=False, num_steps=1)
    assert capped.num_devices == 1
    # Vmapped RL episodes stay on one device unless the config (lrjax train's) spreads them.
    kw = dict(uses_conv=False, num_steps=1, num_items=8, shard_vmapped=False)
    assert engine.resolve(None, **kw).num_devices == 1
    spread = engine.resolve(engine.EngineConfig(shard_vmapped=True), **kw)
    assert spread.num_devices == min(2, len(jax.local_devices()))


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_over_items_has_vmap_semantics_with_padding(batching):
    """An odd item count over two devices: padded, sharded, the padding dropped; the same
    numbers as a plain vmap whatever the batching."""
    eng = engine.resolve(
        engine.EngineConfig(batching=batching), uses_conv=False, num_steps=1, num_items=5
    )
    fn = lambda x, y, shared: {"sum": x + y + shared, "prod": x * y}
    xs, ys = jnp.arange(5.0), jnp.arange(5.0) * 10
    out = jax.jit(eng.over_items(fn, 2))(xs, ys, jnp.float32(1.0))
    expected = jax.vmap(fn, in_axes=(0, 0, None))(xs, ys, 1.0)
    for k in expected:
        np.testing.assert_allclose(out[k], expected[k])
        assert out[k].shape == (5,)


def test_bad_knobs():
    with pytest.raises(ConfigError, match="batching='pmap'"):
        engine.EngineConfig(batching="pmap")
    with pytest.raises(ConfigError, match="conv_impl='fft'"):
        engine.EngineConfig(conv_impl="fft")
    with pytest.raises(ConfigError, match="chunk_size=0"):
        engine.EngineConfig(chunk_size=0)


def test_tests_run_on_two_host_devices_even_when_xla_flags_is_preset():
    """conftest adds its flags to a preset XLA_FLAGS (it used to leave a preset one alone, and
    the two-device tests then ran on one device)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from _xla_flags import with_test_flags

    assert jax.local_device_count() == 2
    preset = with_test_flags("--xla_cpu_enable_fast_math=false --xla_backend_optimization_level=2")
    assert "--xla_force_host_platform_device_count=2" in preset
    assert "--xla_backend_optimization_level=2" in preset and "level=0" not in preset
    assert "count=4" in with_test_flags("--xla_force_host_platform_device_count=4")
    tests = Path(__file__).parent
    code = "import conftest, jax; print(jax.local_device_count())"
    env = dict(os.environ, XLA_FLAGS="--xla_cpu_enable_fast_math=false")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tests, env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == "2", done.stderr


def test_host_devices_wait_for_each_other_past_xlas_40_seconds(monkeypatch):
    """configure_host_devices asks for the device count and the collective timeouts, keeps
    what XLA_FLAGS already sets, and adds no timeout flag for a jaxlib that would not know it
    (an unknown flag aborts XLA)."""
    from lrjax import engine

    monkeypatch.setattr(engine, "_jaxlib_version", lambda: (0, 10))
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_collective_timeout_seconds=5")
    engine.configure_host_devices(3)
    flags = os.environ["XLA_FLAGS"].split()
    assert "--xla_force_host_platform_device_count=3" in flags
    assert "--xla_cpu_collective_call_terminate_timeout_seconds=86400" in flags
    assert "--xla_cpu_collective_timeout_seconds=5" in flags and len(flags) == 3
    engine.configure_host_devices(4)  # everything set already: unchanged
    assert os.environ["XLA_FLAGS"].split() == flags
    monkeypatch.setattr(engine, "_jaxlib_version", lambda: (0, 7))
    monkeypatch.setenv("XLA_FLAGS", "")
    engine.configure_host_devices(2)
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
