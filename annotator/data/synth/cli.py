"""``annotator synth``: generate a synthetic dataset, draw a contact sheet, benchmark.

* ``annotator synth --domain {lab,wild,wild3d} --num-images N --seed S --out DIR``
* ``annotator synth contact-sheet --data DIR --out sheet.png``
* ``annotator synth bench [--domain wild] [--num-images 32]``
"""
from __future__ import annotations

import argparse
import json

from annotator.config import BodyModelConfig


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--image-size {text!r}: expected WIDTHxHEIGHT, e.g. 320x240") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"--image-size {text!r}: both sides must be at least 16 px")
    return w, h


def _body_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--body-model", choices=["open", "smpl"], default="open", help="body model kind (default open)")
    p.add_argument("--body-model-path", default=None, help="SMPL_NEUTRAL.pkl for --body-model smpl")


def _body_model(args: argparse.Namespace) -> BodyModelConfig:
    return BodyModelConfig(kind=args.body_model, path=args.body_model_path)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("synth", help="synthetic people with 3D ground truth, in real dataset formats",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", choices=["lab", "wild", "wild3d"])
    p.add_argument("--num-images", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output directory (local or s3://)")
    p.add_argument("--image-size", type=_size, default=None, metavar="WxH",
                   help="fixed image size (default: per domain)")
    p.add_argument("--keypoint-noise", type=float, default=1.0,
                   help="wild: labelling noise in units of COCO's annotator spread (0 = exact projections)")
    _body_model_args(p)
    p.set_defaults(func=_generate)
    sub = p.add_subparsers(dest="synth_command", required=False)

    cs = sub.add_parser("contact-sheet", help="grid of images with keypoints (visible green, occluded red)")
    cs.add_argument("--data", required=True, help="a generated dataset directory")
    cs.add_argument("--out", dest="sheet", required=True, help="PNG to write")
    cs.add_argument("--columns", type=int, default=4)
    cs.add_argument("--rows", type=int, default=3)
    cs.add_argument("--tile", type=int, default=256, help="tile side in px")
    cs.set_defaults(func=_contact_sheet)

    b = sub.add_parser("bench", help="generation speed (person instances per second)")
    b.add_argument("--domain", dest="bench_domain", choices=["lab", "wild", "wild3d"], default="wild")
    b.add_argument("--num-images", dest="bench_images", type=int, default=32)
    b.add_argument("--seed", dest="bench_seed", type=int, default=0)
    _body_model_args(b)
    b.set_defaults(func=_bench)


def _generate(args: argparse.Namespace) -> int:
    from annotator.data.synth.pipeline import generate

    if not args.domain or not args.out:
        raise SystemExit("annotator synth: --domain and --out are required to generate a dataset")
    result = generate(args.domain, args.num_images, args.seed, args.out, _body_model(args), args.image_size,
                      keypoint_noise=args.keypoint_noise)
    summary = result.summary
    print(json.dumps({k: summary[k] for k in ("num_images", "num_people", "keypoint_visibility", "files")},
                     sort_keys=True))
    return 0


def _contact_sheet(args: argparse.Namespace) -> int:
    from annotator.data.synth.contact_sheet import contact_sheet

    n = contact_sheet(args.data, args.sheet, columns=args.columns, rows=args.rows, tile=args.tile)
    print(f"wrote {args.sheet} ({n} images)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from annotator.data.synth.bench import run_bench

    result = run_bench(args.bench_domain, args.bench_images, args.bench_seed, body_model=_body_model(args))
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0
