"""Test setup: two host devices (so the engine's sharded path runs on this 2-core CPU), fast
compilation, the raw dataset files beside the repository, and shared dataset fixtures."""

import os
from pathlib import Path

from _xla_flags import with_test_flags

os.environ["XLA_FLAGS"] = with_test_flags(os.environ.get("XLA_FLAGS", ""))
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("LRJAX_RAW_DIR", str(SHARED_DATA))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fashion_mnist():
    from lrjax.data import load_dataset

    return load_dataset("fashion_mnist")


@pytest.fixture(scope="session")
def mnist():
    from lrjax.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the repository")
    return SHARED_DATA
