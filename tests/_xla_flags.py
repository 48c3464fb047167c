"""The XLA flags the tests run with, added to any the environment already sets."""

TEST_FLAGS = {
    # two host devices, so the engine's sharded path runs on this 2-core CPU
    "--xla_force_host_platform_device_count": "2",
    # tests check values, not speed: LLVM at -O0 compiles about 2x faster on CPU (compilation
    # dominates this suite); benchmarks run with the default optimisation level
    "--xla_backend_optimization_level": "0",
}


def with_test_flags(existing: str) -> str:
    """``existing`` XLA_FLAGS plus each of :data:`TEST_FLAGS` it does not set itself (a preset
    XLA_FLAGS used to replace them, and the two-device tests ran on one device)."""
    flags = existing.split()
    for name, value in TEST_FLAGS.items():
        if not any(f.split("=")[0] == name for f in flags):
            flags.append(f"{name}={value}")
    return " ".join(flags)
