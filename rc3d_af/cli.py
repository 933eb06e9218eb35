"""The ``rc3d-af`` command line (also ``python -m rc3d_af``).

Each sub-command lives in ``rc3d_af/commands/<name>.py`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``; its module docstring's first line is the command's help. Heavy imports stay
inside ``run`` so that ``rc3d-af --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from rc3d_af.errors import InputError

COMMANDS = {
    "doctor": "rc3d_af.commands.doctor",
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
    try:
        return int(args._run(args) or 0)
    except InputError as exc:
        print(f"rc3d-af {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rc3d-af {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
