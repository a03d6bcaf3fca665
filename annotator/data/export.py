"""Export pseudo-GT to what downstream trainers read today.

* ``spin``: SPIN/CLIFF-style ``.npz`` - ``imgname``, ``center`` (N,2), ``scale`` (N,) (box
  side / 200 px, the SPIN convention), ``pose`` (N,72) axis-angle (global orient first),
  ``shape`` (N,10), ``global_t`` (N,3) camera-frame translation, ``focal_l`` (N,) px, plus
  ``sample_id`` so rows can be traced back.
* ``neuralannot``: NeuralAnnot-style JSON ``{ann_id: {"smpl_param": {"pose": [72],
  "shape": [10], "trans": [3]}, "cam_param": {"focal": [fx, fy], "princpt": [cx, cy]}}}``
  keyed by the dataset's own annotation id (the part of ``sample_id`` after ``<dataset>/``).
"""
from __future__ import annotations

import io
import json
from typing import Sequence

import numpy as np

from annotator import storage
from annotator.data.loader import scan_pseudo_gt

#: SPIN's ``scale`` is the box side in units of 200 px (inherited from the MPII/LSP tools).
SPIN_SCALE_UNIT_PX = 200.0


def _arrays(table) -> dict[str, np.ndarray]:
    stack = lambda c: np.stack(table[c].to_numpy(zero_copy_only=False)).astype(np.float32)  # noqa: E731
    return {c: stack(c) for c in ("bbox", "global_orient", "body_pose", "betas", "transl", "principal_point")} | {
        "focal_length": table["focal_length"].to_numpy().astype(np.float32)}


def export_spin_npz(pseudo_gt_dirs: str | Sequence[str], out_path: str, bbox_scale: float = 1.2, **filters) -> int:
    """Write a SPIN/CLIFF-style npz; returns the number of rows."""
    table = scan_pseudo_gt(pseudo_gt_dirs, **filters)
    a = _arrays(table)
    bbox = a["bbox"]
    center = bbox[:, :2] + bbox[:, 2:] / 2.0
    side = bbox_scale * bbox[:, 2:].max(axis=1)
    buf = io.BytesIO()
    np.savez(buf, imgname=np.asarray(table["image_path"].to_pylist()), center=center,
             scale=side / SPIN_SCALE_UNIT_PX, pose=np.concatenate([a["global_orient"], a["body_pose"]], 1),
             shape=a["betas"], global_t=a["transl"], focal_l=a["focal_length"],
             sample_id=np.asarray(table["sample_id"].to_pylist()))
    storage.write_bytes_atomic(out_path, buf.getvalue())
    return table.num_rows


def export_neuralannot_json(pseudo_gt_dirs: str | Sequence[str], out_path: str, **filters) -> int:
    """Write NeuralAnnot-style JSON keyed by annotation id; returns the number of rows."""
    table = scan_pseudo_gt(pseudo_gt_dirs, **filters)
    a = _arrays(table)
    out = {}
    for i, sid in enumerate(table["sample_id"].to_pylist()):
        ann_id = sid.split("/", 1)[1]
        f = float(a["focal_length"][i])
        out[ann_id] = {
            "smpl_param": {"pose": np.concatenate([a["global_orient"][i], a["body_pose"][i]]).tolist(),
                           "shape": a["betas"][i].tolist(), "trans": a["transl"][i].tolist()},
            "cam_param": {"focal": [f, f], "princpt": a["principal_point"][i].tolist()},
        }
    storage.write_bytes_atomic(out_path, json.dumps(out, sort_keys=True).encode())
    return table.num_rows


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("export", help="export pseudo-GT as SPIN/CLIFF npz or NeuralAnnot JSON")
    p.add_argument("format", choices=["spin", "neuralannot"])
    p.add_argument("pseudo_gt", nargs="+", help="pseudo_gt/<dataset> dir(s) or Parquet file(s) (local or s3://)")
    p.add_argument("--out", required=True, help="output .npz (spin) or .json (neuralannot)")
    p.add_argument("--datasets", nargs="*", default=None, help="keep only these dataset names")
    p.add_argument("--max-err2d-norm", type=float, default=None, help="keep rows with err2d_norm <= this")
    p.add_argument("--max-err2d-px", type=float, default=None, help="keep rows with err2d_px <= this")
    p.set_defaults(func=_export)


def _export(args) -> int:
    filters = {"datasets": args.datasets, "max_err2d_norm": args.max_err2d_norm, "max_err2d_px": args.max_err2d_px}
    fn = export_spin_npz if args.format == "spin" else export_neuralannot_json
    n = fn(args.pseudo_gt, args.out, **filters)
    print(f"wrote {n} rows to {storage.redact(args.out)}")
    return 0
