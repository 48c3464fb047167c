"""``python -m lrjax``: the ``lrjax`` command line (for environments without its script)."""

from lrjax.cli import main

raise SystemExit(main())
