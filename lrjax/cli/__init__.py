"""The ``lrjax`` command line: thin commands over the library.

  lrjax data prepare NAME      prepare a tfds dataset (offline from raw files) and cache its arrays
  lrjax data info              show which datasets are prepared, and where
  lrjax fit                    train one trainee with a fixed optimizer
  lrjax baselines              run baseline optimizers over their grids and seeds
  lrjax train                  train an LR controller with RL (PPO, paper A)
  lrjax evaluate               controllers vs tuned baselines on held-out seeds
  lrjax paper-b                paper B's experiments: its comparison and its 2-D analysis

Nothing here imports jax until a command runs (``lrjax --help`` answers at once), so that the
engine can first ask XLA for one host device per core (:func:`lrjax.engine.configure_host_devices`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("data", "fit", "baselines", "train", "evaluate", "paper-b")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the descriptions' line breaks. An option whose default is None
    (resolved later, e.g. from a preset), off or empty, or whose help already states its
    default, gets no "(default: ...)" appended (it used to read "(default: the preset's)
    (default: None)")."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if default is None or default is False or default in ("", []) or "default" in text:
            return text
        return super()._get_help_string(action)


def _module(command: str):
    return importlib.import_module(f"lrjax.cli.{command.replace('-', '_')}")


def build_parser(detailed: str | None = None) -> argparse.ArgumentParser:
    """The parser. ``detailed`` names the command whose choices (tasks, optimizers) are listed:
    listing them imports the registries (and jax), which ``lrjax --help`` does not need."""
    parser = argparse.ArgumentParser(
        prog="lrjax",
        description="lrjax: learning-rate controllers learned with reinforcement learning, "
        "as optax transforms.\n\n" + "\n".join(__doc__.splitlines()[2:9]),
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        _module(command).add_parser(sub, detailed=command == detailed)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    from lrjax.engine import configure_host_devices

    configure_host_devices()
    from lrjax._validation import ConfigError

    # A user's mistake is one line on stderr and exit code 2, never a traceback. The commands
    # check their arguments before any work; the file errors here are the safety net.
    user_errors = (ConfigError, FileNotFoundError, FileExistsError, PermissionError)
    user_errors += (NotADirectoryError, IsADirectoryError)
    try:
        return _module(args.command).run(args)
    except user_errors as e:
        print(f"lrjax: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
