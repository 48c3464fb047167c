"""Execute the notebooks top to bottom (CI runs this; ``--write`` saves their outputs).

  python notebooks/run_notebooks.py            # run every notebook; exit 1 if one fails
  python notebooks/run_notebooks.py --write 02_paper_a_ppo.ipynb

Each notebook runs in a fresh kernel (the environment's ``python3``), in this folder, at the
small scale of its parameters cell. A failing cell fails the run with the cell's error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--write", action="store_true", help="save the outputs in place")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = [HERE / n for n in args.names] or sorted(HERE.glob("[0-9]*.ipynb"))
    failed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        client = NotebookClient(
            nb, timeout=args.timeout, kernel_name="python3", resources={"metadata": {"path": HERE}}
        )
        try:
            client.execute()
        except CellExecutionError as e:
            failed.append(path.name)
            print(f"FAILED {path.name}:\n{e}", file=sys.stderr, flush=True)
            continue
        print(f"ok {path.name} in {time.perf_counter() - start:.0f} s", flush=True)
        if args.write:
            nbformat.write(nb, path)
    if failed:
        print(f"notebooks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
