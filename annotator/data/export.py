"""Export pseudo-GT to what downstream trainers read today.

* ``spin``: SPIN/CLIFF-style ``.npz`` (the keys SPIN ``datasets/base_dataset.py``, CLIFF's
  ``viz_cliffGT_*`` scripts and mmhuman3d's ``CliffConverter`` read):
  ``imgname`` (N,) relative to the images root (``--images-root``; default the deepest folder
  holding every image, stored as ``images_root``), ``center`` (N,2), ``scale`` (N,) (box side /
  200 px, the SPIN convention), ``part`` (N,24,3) the **annotated** 2D keypoints in SPIN's
  24-joint order (``spin24`` of :mod:`annotator.body.joints`) with confidence 0/1,
  ``pose`` (N,72) axis-angle (global orient first), ``shape`` (N,10), ``has_smpl`` (N,) ones,
  ``global_t`` (N,3) camera-frame translation, ``focal_l`` (N,) px, ``principal_point`` (N,2)
  px, ``annot_id`` (N,) the dataset's own annotation id (int64 when every id is a number, else
  str), ``S`` (N,24,4) 3D joints in metres + confidence where the manifest has 3D truth (only
  when some row has), ``sample_id``, ``dataset``, and the body model: ``body_model_id``,
  ``body_model_checksum``, ``body_model_num_vertices`` (-1 unknown).
* ``neuralannot``: NeuralAnnot-style JSON ``{ann_id: {"smpl_param": {"pose": [72],
  "shape": [10], "trans": [3]}, "cam_param": {"focal": [fx, fy], "princpt": [cx, cy]}}}``
  keyed by the dataset's own annotation id (the part of ``sample_id`` after ``<dataset>/``),
  plus one ``"_meta"`` entry (body model id, checksum, vertex count, datasets). Ids of several
  datasets that collide are refused (the error names them); ``key_by="sample_id"`` keys by the
  full ``<dataset>/<id>`` instead. A row is never dropped.
* ``humandata``: mmhuman3d ``HumanData`` ``.npz`` (what ``HumanData.load`` reads):
  ``image_path``, ``bbox_xywh`` (N,5), ``keypoints2d`` (N,17,3) in mmhuman3d's ``coco``
  convention with ``keypoints2d_mask`` (17,) and ``keypoints2d_convention``, ``smpl``
  (dict: ``global_orient`` (N,3), ``body_pose`` (N,23,3), ``betas`` (N,10), ``transl`` (N,3)),
  ``meta`` (dict: gender, sample_id, dataset, focal_length, principal_point, body model id,
  checksum, vertex count), ``config`` and the ``__key_strict__``/``__temporal_len__``/
  ``__keypoints_compressed__`` entries ``HumanData.dump`` writes.

Every export records the body model the parameters belong to; the command line prints a loud
warning when it is not SMPL's 6,890-vertex topology (the open model has 13,718 vertices:
consumers that hard-code SMPL's mesh, e.g. I2L-MeshNet or Hand4Whole, cannot use it).
"""
from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from annotator import storage
from annotator.body.joints import TRAIN_CONVENTION
from annotator.data.loader import annotations_for, keypoints_in, scan_pseudo_gt
from annotator.layout import RunLayout

#: SPIN's ``scale`` is the box side in units of 200 px (inherited from the MPII/LSP tools).
SPIN_SCALE_UNIT_PX = 200.0
#: Vertices of SMPL's own mesh; consumers of SPIN/NeuralAnnot data assume it.
SMPL_NUM_VERTICES = 6890


class ExportError(ValueError):
    """An export cannot be written faithfully (message says why)."""


@dataclass
class ExportResult:
    rows: int
    body_model_id: str
    body_model_checksum: str
    num_vertices: int | None  # None: the model file was not found beside the pseudo-GT

    @property
    def warning(self) -> str | None:
        if self.num_vertices == SMPL_NUM_VERTICES:
            return None
        what = "an unknown number of" if self.num_vertices is None else f"{self.num_vertices:,}"
        return (f"WARNING: these parameters belong to body model {self.body_model_id!r} "
                f"(sha256 {self.body_model_checksum[:12]}...) with {what} vertices, NOT SMPL's "
                f"{SMPL_NUM_VERTICES:,}-vertex mesh. Code that hard-codes SMPL's topology "
                f"(I2L-MeshNet, Hand4Whole, ...) cannot use them; load the parameters with that model.")


def _arrays(table) -> dict[str, np.ndarray]:
    n = table.num_rows
    stack = lambda c, w: np.stack(table[c].to_numpy(zero_copy_only=False)).astype(np.float32) if n \
        else np.zeros((0, w), np.float32)  # noqa: E731
    widths = {"bbox": 4, "global_orient": 3, "body_pose": 69, "betas": 10, "transl": 3, "principal_point": 2}
    return {c: stack(c, w) for c, w in widths.items()} | {
        "focal_length": table["focal_length"].to_numpy().astype(np.float32)}


def _body_model(table, paths: Sequence[str]) -> ExportResult:
    """The one body model of all rows (ExportError if rows of several are mixed), and its
    vertex count from the run's ``body_model/smpl/SMPL_NEUTRAL.pkl`` when its checksum matches."""
    pairs = sorted(set(zip(table["body_model_id"].to_pylist(), table["body_model_checksum"].to_pylist())))
    if len(pairs) != 1:
        raise ExportError(f"rows of {len(pairs)} body models would be mixed in one file: {pairs}; "
                          "export each model's pseudo-GT separately" if pairs else "no rows to export")
    model_id, checksum = pairs[0]
    vertices = None
    for p in paths:
        pkl = RunLayout.of_output(p).body_model()
        if not storage.exists(pkl):
            continue
        from annotator.body.smpl_convert import load_smpl_dict

        raw = storage.read_bytes(pkl)
        if storage.sha256_hex(raw) == checksum:
            vertices = int(np.asarray(load_smpl_dict(pkl, raw)["v_template"]).shape[0])
            break
    return ExportResult(table.num_rows, model_id, checksum, vertices)


def _scan(pseudo_gt_dirs, filters):
    paths = [pseudo_gt_dirs] if isinstance(pseudo_gt_dirs, str) else list(pseudo_gt_dirs)
    table = scan_pseudo_gt(paths, **filters)
    ids = table["sample_id"].to_pylist()
    if len(set(ids)) != len(ids):
        raise ExportError(f"{len(ids) - len(set(ids))} sample_id(s) appear twice among the inputs "
                          "(the same pseudo-GT given twice?)")
    return paths, table, _body_model(table, paths)


def _ann_ids(table) -> list[str]:
    return [sid.split("/", 1)[1] for sid in table["sample_id"].to_pylist()]


def images_root_of(image_paths: Sequence[str]) -> str:
    """The deepest folder (or URL prefix) that holds every image."""
    if not image_paths:
        return ""
    dirs = [p.rsplit("/", 1)[0] if "://" in p else os.path.dirname(p) for p in image_paths]
    if any("://" in d for d in dirs):
        root = os.path.commonprefix(dirs)
        return root[: root.rfind("/")] if not all(d == root for d in dirs) else root
    return os.path.commonpath(dirs)


def relative_image_names(image_paths: Sequence[str], root: str) -> list[str]:
    out = []
    for p in image_paths:
        rel = p[len(root):].lstrip("/") if "://" in p else os.path.relpath(p, root)
        if rel.startswith(".."):
            raise ExportError(f"image {storage.redact(p)} is not under the images root {storage.redact(root)}")
        out.append(rel.replace(os.sep, "/"))
    return out


def export_spin_npz(pseudo_gt_dirs: str | Sequence[str], out_path: str, bbox_scale: float = 1.2,
                    images_root: str | None = None, manifest_root: str | None = None, **filters) -> ExportResult:
    """Write a SPIN/CLIFF-style npz (keys in the module docstring)."""
    paths, table, info = _scan(pseudo_gt_dirs, filters)
    a = _arrays(table)
    ann = annotations_for(table, paths, manifest_root)
    part, _ = keypoints_in(ann, "spin24")
    part[..., 2] = (part[..., 2] > 0).astype(np.float32)
    bbox = a["bbox"]
    center = bbox[:, :2] + bbox[:, 2:] / 2.0
    side = bbox_scale * bbox[:, 2:].max(axis=1)
    image_paths = table["image_path"].to_pylist()
    root = images_root if images_root is not None else images_root_of(image_paths)
    ann_ids = _ann_ids(table)
    annot_id = np.asarray([int(x) for x in ann_ids], np.int64) if ann_ids and all(x.isdigit() for x in ann_ids) \
        else np.asarray(ann_ids, dtype=str)
    keys = dict(
        imgname=np.asarray(relative_image_names(image_paths, root), dtype=str), images_root=np.asarray(root),
        center=center, scale=side / SPIN_SCALE_UNIT_PX, part=part,
        pose=np.concatenate([a["global_orient"], a["body_pose"]], 1), shape=a["betas"],
        has_smpl=np.ones(table.num_rows, np.float32), global_t=a["transl"], focal_l=a["focal_length"],
        principal_point=a["principal_point"], annot_id=annot_id,
        sample_id=np.asarray(table["sample_id"].to_pylist(), dtype=str),
        dataset=np.asarray(table["dataset"].to_pylist(), dtype=str),
        body_model_id=np.asarray(info.body_model_id), body_model_checksum=np.asarray(info.body_model_checksum),
        body_model_num_vertices=np.asarray(-1 if info.num_vertices is None else info.num_vertices),
    )
    has3d = np.asarray(ann["has_3d"].to_pylist(), dtype=bool)
    if has3d.any():
        xyz, present = keypoints_in(ann, "spin24", "joints_3d", "joints_3d_convention")
        conf = (present & has3d[:, None]).astype(np.float32)
        keys["S"] = np.concatenate([xyz, conf[..., None]], axis=-1)
    buf = io.BytesIO()
    np.savez(buf, **keys)
    storage.write_bytes_atomic(out_path, buf.getvalue())
    return info


def export_neuralannot_json(pseudo_gt_dirs: str | Sequence[str], out_path: str, key_by: str = "ann_id",
                            **filters) -> ExportResult:
    """Write NeuralAnnot-style JSON keyed by annotation id (or by ``sample_id``)."""
    if key_by not in ("ann_id", "sample_id"):
        raise ValueError(f"key_by must be 'ann_id' or 'sample_id', got {key_by!r}")
    paths, table, info = _scan(pseudo_gt_dirs, filters)
    a = _arrays(table)
    keys = _ann_ids(table) if key_by == "ann_id" else table["sample_id"].to_pylist()
    if len(set(keys)) != len(keys):
        seen: dict[str, str] = {}
        clashes = []
        for k, sid in zip(keys, table["sample_id"].to_pylist()):
            if k in seen:
                clashes.append(f"{seen[k]} and {sid}")
            seen.setdefault(k, sid)
        raise ExportError(f"{len(clashes)} annotation id(s) of different datasets collide in one NeuralAnnot "
                          f"JSON (e.g. {'; '.join(clashes[:3])}); rows would be lost. Export one dataset per file "
                          "(--datasets NAME) or key by sample_id (--key-by sample_id).")
    out: dict[str, dict] = {"_meta": {
        "body_model_id": info.body_model_id, "body_model_checksum": info.body_model_checksum,
        "body_model_num_vertices": info.num_vertices, "datasets": sorted(set(table["dataset"].to_pylist())),
        "rows": table.num_rows, "key": key_by}}
    for i, k in enumerate(keys):
        f = float(a["focal_length"][i])
        out[k] = {
            "smpl_param": {"pose": np.concatenate([a["global_orient"][i], a["body_pose"][i]]).tolist(),
                           "shape": a["betas"][i].tolist(), "trans": a["transl"][i].tolist()},
            "cam_param": {"focal": [f, f], "princpt": a["principal_point"][i].tolist()},
        }
    storage.write_bytes_atomic(out_path, json.dumps(out, sort_keys=True).encode())
    return info


def export_humandata(pseudo_gt_dirs: str | Sequence[str], out_path: str, manifest_root: str | None = None,
                     **filters) -> ExportResult:
    """Write an mmhuman3d ``HumanData`` npz (keys in the module docstring)."""
    paths, table, info = _scan(pseudo_gt_dirs, filters)
    a = _arrays(table)
    n = table.num_rows
    kps, present = keypoints_in(annotations_for(table, paths, manifest_root), TRAIN_CONVENTION)
    kps[..., 2] = (kps[..., 2] > 0).astype(np.float32)
    mask = present.any(axis=0).astype(np.uint8)  # joints some row's own convention has
    smpl = {"global_orient": a["global_orient"], "body_pose": a["body_pose"].reshape(n, 23, 3),
            "betas": a["betas"], "transl": a["transl"]}
    meta = {"gender": ["neutral"] * n, "sample_id": table["sample_id"].to_pylist(),
            "dataset": table["dataset"].to_pylist(), "focal_length": a["focal_length"],
            "principal_point": a["principal_point"], "body_model_id": info.body_model_id,
            "body_model_checksum": info.body_model_checksum, "body_model_num_vertices": info.num_vertices}
    keys = {
        "__key_strict__": False, "__temporal_len__": n, "__keypoints_compressed__": False,
        "image_path": np.asarray(table["image_path"].to_pylist(), dtype=str),
        "bbox_xywh": np.concatenate([a["bbox"], np.ones((n, 1), np.float32)], axis=1),
        "keypoints2d": kps, "keypoints2d_mask": mask, "keypoints2d_convention": "coco",
        "smpl": smpl, "meta": meta, "config": "annotator",
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) if not isinstance(v, dict) else _object(v) for k, v in keys.items()})
    storage.write_bytes_atomic(out_path, buf.getvalue())
    return info


def _object(d: dict) -> np.ndarray:
    arr = np.empty((), dtype=object)
    arr[()] = d
    return arr


EXPORTERS = {"spin": export_spin_npz, "neuralannot": export_neuralannot_json, "humandata": export_humandata}


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("export", help="export pseudo-GT as SPIN/CLIFF npz, NeuralAnnot JSON or mmhuman3d HumanData")
    p.add_argument("format", choices=sorted(EXPORTERS))
    p.add_argument("pseudo_gt", nargs="+", help="pseudo_gt/<dataset> dir(s) or Parquet file(s) (local or s3://)")
    p.add_argument("--out", required=True, help="output .npz (spin, humandata) or .json (neuralannot)")
    p.add_argument("--datasets", nargs="*", default=None, help="keep only these dataset names")
    p.add_argument("--max-err2d-norm", type=float, default=None, help="keep rows with err2d_norm <= this")
    p.add_argument("--max-err2d-px", type=float, default=None, help="keep rows with err2d_px <= this")
    p.add_argument("--images-root", default=None, help="spin: imgname relative to this (default: common folder)")
    p.add_argument("--manifest-root", default=None,
                   help="spin/humandata: folder holding <dataset>/_manifest.json (default: <run>/manifest)")
    p.add_argument("--key-by", choices=["ann_id", "sample_id"], default="ann_id",
                   help="neuralannot: JSON keys (ann_id refuses ids that collide across datasets)")
    p.set_defaults(func=_export)


def _export(args) -> int:
    filters = {"datasets": args.datasets, "max_err2d_norm": args.max_err2d_norm, "max_err2d_px": args.max_err2d_px}
    extra = {"neuralannot": {"key_by": args.key_by},
             "spin": {"images_root": args.images_root, "manifest_root": args.manifest_root},
             "humandata": {"manifest_root": args.manifest_root}}[args.format]
    try:
        info = EXPORTERS[args.format](args.pseudo_gt, args.out, **extra, **filters)
    except (ExportError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if info.warning:
        bar = "!" * 78
        print(f"{bar}\n{info.warning}\n{bar}", file=sys.stderr)
    print(f"wrote {info.rows} rows to {storage.redact(args.out)} "
          f"(body model {info.body_model_id}, sha256 {info.body_model_checksum[:12]})")
    return 0
