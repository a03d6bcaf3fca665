"""``annotator overlay`` and ``annotator report``: look at a finished run.

* ``annotator overlay RUN_DIR --dataset NAME [--output pseudo_gt|prior] [--num N]
  [--sample-ids ID ...] [--columns C] [--tile PX] [--no-side] --out FILE.png``:
  meshes of the first N images (or of the listed samples) over their photos.
* ``annotator report RUN_DIR [--out FILE.html] [--worst K]``: the offline HTML quality
  dashboard (default ``RUN_DIR/reports/dashboard.html``).
"""
from __future__ import annotations

import argparse
import sys

from annotator import storage


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def add_commands(subparsers) -> None:
    o = subparsers.add_parser("overlay", help="render a run's meshes over their images (PNG grid)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    o.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (<storage root>/<job name>, local or s3://)")
    o.add_argument("--dataset", required=True, help="dataset name (a directory under pseudo_gt/)")
    o.add_argument("--output", choices=["pseudo_gt", "prior"], default="pseudo_gt",
                   help="which output to draw (default pseudo_gt, the final one)")
    o.add_argument("--num", type=_positive, default=8, help="number of images (default 8; ignored with --sample-ids)")
    o.add_argument("--sample-ids", nargs="+", default=None, metavar="ID", help="draw only these samples")
    o.add_argument("--columns", type=_positive, default=2, help="tiles per row (default 2)")
    o.add_argument("--tile", type=_positive, default=400, help="longest image side in px (default 400)")
    o.add_argument("--no-side", dest="side", action="store_false", help="omit the side views")
    o.add_argument("--out", required=True, help="PNG to write (local or s3://)")
    o.set_defaults(func=_overlay)

    r = subparsers.add_parser("report", help="self-contained HTML quality dashboard of a run",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (local or s3://)")
    r.add_argument("--out", default=None, help="HTML to write (default RUN_DIR/reports/dashboard.html)")
    r.add_argument("--worst", type=int, default=6, help="worst samples shown per dataset, 0 for none (default 6)")
    r.set_defaults(func=_report)


INPUT_ERRORS = (FileNotFoundError, KeyError, ValueError)
"""Problems with the run directory or the arguments: reported in one line, exit status 2."""


def _fail(command: str, err: Exception) -> int:
    message = err.args[0] if isinstance(err, KeyError) and err.args else err
    print(f"annotator {command}: error: {storage.redact(str(message))}", file=sys.stderr)
    return 2


def _overlay(args: argparse.Namespace) -> int:
    from annotator.evaluation.overlay import write_overlay

    try:
        n = write_overlay(args.run_dir, args.dataset, args.out, output=args.output, num=args.num,
                          sample_ids=args.sample_ids, columns=args.columns, tile=args.tile, side=args.side)
    except INPUT_ERRORS as err:
        return _fail("overlay", err)
    print(f"wrote {storage.redact(args.out)} ({n} tiles)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from annotator.evaluation.dashboard import write_dashboard

    if args.worst < 0:
        return _fail("report", ValueError(f"--worst {args.worst}: must be >= 0"))
    try:
        path = write_dashboard(args.run_dir, args.out, worst=args.worst)
    except INPUT_ERRORS as err:
        return _fail("report", err)
    print(f"wrote {storage.redact(path)}")
    return 0
