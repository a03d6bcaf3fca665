"""``annotator body ...``: build/inspect/convert/render the body model.

Sub-commands: ``info``, ``build-open [--force]``, ``convert-smpl IN OUT``,
``render --out body.png``. Its forward time: ``annotator bench body``.
"""
from __future__ import annotations

import argparse
import json

import torch

from annotator.config import BodyModelConfig

SHOWCASE_POSE_DEG = {
    # SMPL joint -> axis-angle (degrees) of the "posed" preview: a walking step, arms down.
    "left_hip": (-35.0, 0.0, 0.0), "right_hip": (25.0, 0.0, 0.0), "left_knee": (50.0, 0.0, 0.0),
    "right_knee": (10.0, 0.0, 0.0), "left_shoulder": (0.0, 0.0, -65.0),
    "right_shoulder": (0.0, 0.0, 65.0), "left_elbow": (0.0, -60.0, 0.0), "right_elbow": (0.0, 20.0, 0.0),
}


def _config(args: argparse.Namespace) -> BodyModelConfig:
    kw = {"kind": args.kind}
    if args.path:
        kw["path"] = args.path
    if args.cache_dir:
        kw["cache_dir"] = args.cache_dir
    return BodyModelConfig(**kw)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=["open", "smpl"], default="open")
    p.add_argument("--path", default=None, help="model pkl (required for --kind smpl)")
    p.add_argument("--cache-dir", default=None, help="project cache (default $ANNOTATOR_CACHE_DIR)")


def showcase_pose(model) -> torch.Tensor:
    """(1, 69) axis-angle body pose of :data:`SHOWCASE_POSE_DEG`."""
    from annotator.body.model import SMPL_JOINT_NAMES

    pose = torch.zeros(1, 23, 3)
    for name, deg in SHOWCASE_POSE_DEG.items():
        pose[0, SMPL_JOINT_NAMES.index(name) - 1] = torch.deg2rad(torch.tensor(deg))
    return pose.reshape(1, 69)


def model_summary(model, cache_dir: str | None = None) -> dict:
    """Numbers of ``annotator body info`` (heights from the mesh at zero pose)."""
    from annotator.body.open_model import read_summary

    with torch.no_grad():
        betas = torch.zeros(3, model.num_betas)
        betas[1, 0], betas[2, 0] = -2.0, 2.0
        v = model.rest_output(betas).vertices
        heights = (v[..., 1].amax(1) - v[..., 1].amin(1)).tolist()
    out = {
        "model_id": model.model_id, "checksum": model.checksum, "vertices": model.num_vertices,
        "faces": int(model.faces.shape[0]), "joints": 24, "keypoints": len(model.keypoint_names),
        "num_betas": model.num_betas,
        "height_m": {"beta0=0": round(heights[0], 4), "beta0=-2": round(heights[1], 4), "beta0=+2": round(heights[2], 4)},
    }
    built = read_summary(cache_dir) if cache_dir and model.model_id.startswith("open-") else None
    if built and built.get("checksum") == model.checksum:
        out["jreg_heldout_error_mm"] = {k: round(built["jreg_heldout_error_mm"][k], 2) for k in ("mean", "max")}
        out["build"] = {k: built[k] for k in ("num_samples", "heldout_samples", "seed", "build_seconds")}
    return out


def _info(args: argparse.Namespace) -> int:
    from annotator.body.model import load_body_model

    cfg = _config(args)
    model = load_body_model(cfg)
    print(json.dumps({"kind": cfg.kind, **model_summary(model, cfg.cache_dir)}, indent=2))
    return 0


def _build_open(args: argparse.Namespace) -> int:
    from annotator.body.open_model import ensure_open_model, read_summary

    cfg = BodyModelConfig(**({"cache_dir": args.cache_dir} if args.cache_dir else {}))
    path = ensure_open_model(cfg.cache_dir, force=args.force)
    summary = read_summary(cfg.cache_dir) or {}
    summary.pop("vertex_ids", None)
    print(json.dumps({"path": path, **summary}, indent=2))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from annotator.body.smpl_convert import convert_smpl

    shapes = convert_smpl(args.src, args.dst)
    print(json.dumps({"written": args.dst, "arrays": {k: list(v) for k, v in shapes.items()}}, indent=2))
    return 0


def _render(args: argparse.Namespace) -> int:
    from annotator.body.model import load_body_model
    from annotator.render.preview import render_grid, save_png

    model = load_body_model(_config(args))
    with torch.no_grad():
        rest = model.rest_output().vertices[0].numpy()
        zeros = torch.zeros(1, 3)
        posed = model(zeros, showcase_pose(model), torch.zeros(1, model.num_betas)).vertices[0].numpy()
    image = render_grid([rest, posed], model.faces.numpy(), tile=args.tile)
    save_png(image, args.out)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}): rows rest/posed, columns front/side")
    return 0


def add_commands(subparsers) -> None:
    body = subparsers.add_parser("body", help="body model: info, build-open, convert-smpl, render")
    sub = body.add_subparsers(dest="body_command", required=True)

    p = sub.add_parser("info", help="print the body model summary")
    _add_model_args(p)
    p.set_defaults(func=_info)

    p = sub.add_parser("build-open", help="build the open (anny) model into the cache")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--cache-dir", default=None)
    p.set_defaults(func=_build_open)

    p = sub.add_parser("convert-smpl", help="write a chumpy-free copy of an SMPL pkl")
    p.add_argument("src", metavar="IN")
    p.add_argument("dst", metavar="OUT")
    p.set_defaults(func=_convert)

    p = sub.add_parser("render", help="PNG of the rest and a posed body, front and side")
    _add_model_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--tile", type=int, default=360, help="side of each view in px")
    p.set_defaults(func=_render)
