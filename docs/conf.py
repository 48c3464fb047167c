"""Sphinx configuration of lrjax's documentation site (``make docs``).

Sphinx with MyST-NB and the Sphinx Book Theme, as optax and flax build theirs: the pages are
Markdown, the API reference is generated from the docstrings (autodoc, Google-style sections
through napoleon), and the notebooks in ``../notebooks`` are rendered with their committed
outputs, never re-executed (``nb_execution_mode = "off"``). The build runs offline with
warnings as errors (``sphinx-build -W``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

project = "lrjax"
author = "the lrjax authors"
copyright = "2026, the lrjax authors"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}

# The notebooks live in ../notebooks (where CI executes them); the build reads copies of them.
NOTEBOOKS = HERE / "notebooks"
NOTEBOOKS.mkdir(exist_ok=True)
for notebook in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
    shutil.copy2(notebook, NOTEBOOKS / notebook.name)

# RESULTS.md (included by results.md) shows figures from ../results by paths relative to the
# repository's root; the build reads copies of them at the same paths relative to docs/.
for figure in sorted((ROOT / "results").rglob("*.png")):
    copy = HERE / figure.relative_to(ROOT)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(figure, copy)

nb_execution_mode = "off"  # rendered with the outputs committed in ../notebooks
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # a NamedTuple's fields are documented once, as autodoc finds them

html_theme = "sphinx_book_theme"
html_title = "lrjax"
html_theme_options = {
    "repository_url": "https://github.com/lrjax/lrjax",
    "use_repository_button": False,
    "show_toc_level": 2,
}
