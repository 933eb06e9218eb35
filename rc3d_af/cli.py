"""The ``rc3d-af`` command line (also ``python -m rc3d_af``).

Each sub-command lives in ``rc3d_af/commands/<name>.py`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``; its module docstring's first line is the command's help. Heavy imports stay
inside ``run`` so that ``rc3d-af --help`` is fast. Bad input (:class:`rc3d_af.errors.InputError`)
is one ``error:`` line and exit status 2; warnings raised by rc3d_af are ``warning:`` lines.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from rc3d_af import __version__
from rc3d_af.data.checks import DataWarning
from rc3d_af.errors import InputError

COMMANDS = {
    "doctor": "rc3d_af.commands.doctor",
    "check-data": "rc3d_af.commands.check_data",
    "evaluate": "rc3d_af.commands.evaluate",
    "convert-annotations": "rc3d_af.commands.convert_annotations",
    "synth": "rc3d_af.commands.synth",
    "train": "rc3d_af.commands.train",
    "test": "rc3d_af.commands.test",
    "detect": "rc3d_af.commands.detect",
    "proposals": "rc3d_af.commands.proposals",
    "info": "rc3d_af.commands.info",
    "ablation": "rc3d_af.commands.ablation",
    "demo": "rc3d_af.commands.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rc3d-af", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rc3d-af {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or "").strip().splitlines()[0]
        sub = subparsers.add_parser(name, help=summary, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _warning_printer(args.command, warnings.showwarning)
        warnings.simplefilter("always", DataWarning)  # each command's data summaries, every time
        try:
            return int(args._run(args) or 0)
        except InputError as exc:
            print(f"rc3d-af {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"rc3d-af {args.command}: interrupted", file=sys.stderr)
            return 130


_PACKAGE = Path(__file__).resolve().parent


def _warning_printer(command: str, default):
    """``showwarning`` that prints rc3d_af's own warnings as ``rc3d-af CMD: warning: ...`` lines."""

    def show(message, category, filename, lineno, file=None, line=None):
        if Path(filename).resolve().is_relative_to(_PACKAGE):
            print(f"rc3d-af {command}: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


if __name__ == "__main__":
    sys.exit(main())
