"""``annotator manifest``: build a sharded manifest from one annotation source.

Example::

    annotator manifest --format coco --path person_keypoints_val2017.json \\
        --images val2017/ --name coco_val --out runs/x/manifest/coco_val
"""
from __future__ import annotations

import argparse
import json
import sys

from annotator import storage


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("manifest", help="annotation file -> sharded Parquet manifest + rejects",
                              description=__doc__.splitlines()[0])
    p.add_argument("--format", required=True, choices=["coco", "mpii_json", "mpii_mat", "spin_npz", "parquet"])
    p.add_argument("--path", required=True, help="annotation file (or Parquet dir), local or s3://")
    p.add_argument("--images", default=None, help="image root (default: the annotation file's folder)")
    p.add_argument("--name", required=True, help="dataset name (prefix of every sample_id)")
    p.add_argument("--out", required=True, help="manifest output dir")
    p.add_argument("--rejects", default=None, help="rejects output dir (default: <out>/../../rejects/<name>)")
    p.add_argument("--shard-size", type=int, default=None)
    p.add_argument("--min-visible-keypoints", type=int, default=None)
    p.add_argument("--no-check-images", action="store_true", help="skip image header checks where sizes are known")
    p.add_argument("--focal-length", type=float, default=None, help="known focal length (px) of every image")
    p.set_defaults(func=run_manifest)


def default_rejects_dir(out: str, name: str) -> str:
    """``<run>/manifest/<name>`` -> ``<run>/rejects/<name>`` (the run layout); else ``<out>/_rejects``."""
    parts = out.rstrip("/").rsplit("/", 2)
    if len(parts) == 3 and parts[1] == "manifest":
        return storage.join(parts[0], "rejects", name)
    return storage.join(out, "_rejects")


def run_manifest(args: argparse.Namespace) -> int:
    from annotator.config import DatasetConfig, ManifestConfig
    from annotator.data import ManifestError, build_manifest

    ds = DatasetConfig(name=args.name, format=args.format, role="target", path=args.path, images=args.images,
                       focal_length=args.focal_length)
    overrides = {k: v for k, v in (("shard_size", args.shard_size),
                                   ("min_visible_keypoints", args.min_visible_keypoints)) if v is not None}
    mcfg = ManifestConfig(check_images=not args.no_check_images, **overrides)
    rejects = args.rejects or default_rejects_dir(args.out, args.name)
    try:
        info = build_manifest(ds, mcfg, args.out, rejects)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(info.to_json(), indent=2, sort_keys=True))
    return 0
