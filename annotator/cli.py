"""``annotator`` command line: one entry point, one sub-command group per concern.

Each concern module exposes ``add_commands(subparsers)``; its handlers are set with
``parser.set_defaults(func=...)`` and receive the parsed ``argparse.Namespace``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that register sub-commands (imported lazily so `annotator --help` is fast).
COMMAND_MODULES = [
    "annotator.body.cli",
    "annotator.data.cli",
    "annotator.data.synth.cli",
    "annotator.data.export",
    "annotator.evaluation.cli",
    "annotator.bench.cli",
    "annotator.fitting.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annotator", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    # every argument goes to python -m annotator.run's own parser (--set, --force, --help): one definition
    run = sub.add_parser("run", help="run a job file (same as python -m annotator.run; see its --help)",
                         add_help=False, prefix_chars="\0")  # no options of its own: all pass through
    run.add_argument("args", nargs=argparse.REMAINDER)
    run.set_defaults(func=_run_job)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def _run_job(args: argparse.Namespace) -> int:
    from annotator.run import main as run_main

    return run_main(args.args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
