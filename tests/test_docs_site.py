"""The built documentation site in a real headless browser (Debian's Chromium): the API page of
``scale_by_controller`` and a rendered notebook show their content, and a screenshot of the API
page is saved under the build folder (``docs/_build/screenshots``).

Needs ``make docs`` first and Chromium (``.ci/run`` installs it): ``make test-docs``. Outside
CI, a missing site or browser skips; with ``LRJAX_REQUIRE_DOCS=1`` (``.ci/run``) it fails.
"""

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.docs

SITE = Path(__file__).resolve().parents[1] / "docs" / "_build" / "html"
SCREENSHOTS = SITE.parent / "screenshots"
# As root, in a closed network: no sandbox, no background connections (they are refused).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _need(what: str, present: bool) -> None:
    if not present:
        if os.environ.get("LRJAX_REQUIRE_DOCS") == "1":
            pytest.fail(f"{what} is missing (LRJAX_REQUIRE_DOCS=1)")
        pytest.skip(f"{what} is missing: run make docs and install chromium")


@pytest.fixture(scope="module")
def site():
    _need(f"the built site {SITE}", (SITE / "index.html").is_file())
    _need("chromium", shutil.which("chromium") is not None)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _chromium(tmp_path, *args) -> str:
    out = subprocess.run(
        ["chromium", *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout


def test_the_api_page_of_scale_by_controller_shows_its_signature_and_docstring(site, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", f"{site}/api/lrjax.controller.html")
    assert 'id="lrjax.controller.scale_by_controller"' in dom  # its anchor, from autodoc
    assert "predictions_shape" in dom and "total_steps" in dom  # its arguments
    assert "with the LR chosen by a learned controller at each step" in dom  # its docstring


def test_a_rendered_notebook_shows_its_committed_outputs(site, tmp_path):
    dom = _chromium(tmp_path, "--dump-dom", f"{site}/notebooks/01_quickstart.html")
    assert "controller: test loss" in dom  # a printed output of the committed notebook
    assert '<img alt="../_images/' in dom  # its figure, written out by myst-nb


def test_a_screenshot_of_the_api_page_is_not_blank(site, tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / "scale_by_controller.png"
    path.unlink(missing_ok=True)
    url = f"{site}/api/lrjax.controller.html"  # headless Chromium paints nothing at an #anchor
    _chromium(
        tmp_path,
        "--window-size=1280,1000",
        "--virtual-time-budget=5000",
        f"--screenshot={path}",
        url,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (1000, 1280)
    assert np.std(pixels[..., :3]) > 0.05  # text and navigation, not an empty page
