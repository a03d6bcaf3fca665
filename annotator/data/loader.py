"""Downstream loader: a PyTorch ``Dataset`` over pseudo-GT Parquet (local or ``s3://``).

For training an estimator on the annotator's output::

    ds = PseudoGTDataset("runs/demo/pseudo_gt/wild", max_err2d_norm=0.1, crop_size=224)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=8, shuffle=True)

Each item holds the crop (normalised, CLIFF crop conventions), the CLIFF bbox information
(Eq. 5), the SMPL targets (axis-angle, camera frame), and for tracing/weighting/filtering:
``sample_id`` (str), the annotated ``keypoints_2d`` (17, 2) px in COCO-17 order with their
``keypoints_conf`` (17,) 0/1 (from the run's manifest; MPII rows carry the joints COCO-17
shares), ``err2d_px``, ``err2d_norm`` (NaN: no annotated keypoint) and ``valid`` (finite
parameters and a finite 2D error). Filtering happens on the Parquet
scan (dataset names, quality columns), so filtered-out rows are never decoded.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import torch

from annotator import storage
from annotator.data.pseudo_gt import PARAM_WIDTHS
from annotator.layout import RunLayout

COLUMNS = ("sample_id", "dataset", "image_path", "bbox", "image_width", "image_height", "focal_length",
           "principal_point", "keypoints_2d", "err2d_px", "err2d_norm", "body_model_id", "body_model_checksum",
           *PARAM_WIDTHS)


def scan_pseudo_gt(paths: str | Sequence[str], datasets: Sequence[str] | None = None,
                   max_err2d_norm: float | None = None, max_err2d_px: float | None = None):
    """The filtered pseudo-GT rows as one Arrow table (small: no images)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    files: list[str] = []
    for p in paths:
        files += storage.listdir(p, ".parquet") if not p.endswith(".parquet") else [p]
    if not files:
        raise FileNotFoundError(f"no pseudo-GT Parquet files under {[storage.redact(p) for p in paths]}")
    fs, _ = storage.pyarrow_filesystem(files[0])
    ds = pads.dataset([storage.filesystem(f)[1] for f in files], filesystem=fs, format="parquet")
    flt = None
    for cond in (
        pc.field("dataset").isin(list(datasets)) if datasets else None,
        pc.field("err2d_norm") <= max_err2d_norm if max_err2d_norm is not None else None,
        pc.field("err2d_px") <= max_err2d_px if max_err2d_px is not None else None,
    ):
        if cond is not None:
            flt = cond if flt is None else flt & cond
    return ds.to_table(columns=list(COLUMNS), filter=flt)


#: Manifest columns the exports and the loader join onto pseudo-GT rows (annotations, 3D truth).
ANNOTATION_COLUMNS = ("sample_id", "keypoints_2d", "keypoint_convention", "joints_3d", "joints_3d_convention", "has_3d")


def find_manifests(paths: str | Sequence[str], datasets: Sequence[str], manifest_root: str | None = None) -> dict[str, str]:
    """Manifest dir of each dataset: ``<manifest_root>/<dataset>``, else ``<run>/manifest/<dataset>``
    beside the given pseudo-GT dirs (the run layout). FileNotFoundError names what it looked for."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    roots = [manifest_root] if manifest_root else [RunLayout.of_output(p).manifest_dir() for p in paths]
    out = {}
    for name in datasets:
        tried = [storage.join(r, name) for r in dict.fromkeys(roots)]
        hit = next((t for t in tried if storage.exists(storage.join(t, "_manifest.json"))), None)
        if hit is None:
            raise FileNotFoundError(f"no manifest of dataset {name!r} (the annotated keypoints) at "
                                    f"{[storage.redact(t) for t in tried]}; pass the folder holding "
                                    f"<dataset>/_manifest.json as manifest_root (--manifest-root)")
        out[name] = hit
    return out


def annotations_for(table, paths: str | Sequence[str], manifest_root: str | None = None):
    """The manifest rows (:data:`ANNOTATION_COLUMNS`) of the pseudo-GT rows of ``table``,
    in the same order; KeyError naming a sample the manifest lacks."""
    import pyarrow as pa

    from annotator.data.manifest import manifest_shards, read_parquet_file

    ids = table["sample_id"].to_pylist()
    dirs = find_manifests(paths, sorted(set(table["dataset"].to_pylist())), manifest_root)
    parts = [read_parquet_file(s, list(ANNOTATION_COLUMNS)) for d in dirs.values() for s in manifest_shards(d)]
    man = pa.concat_tables(parts, promote_options="permissive") if parts else None
    pos = {sid: i for i, sid in enumerate(man["sample_id"].to_pylist())} if man is not None else {}
    missing = [sid for sid in ids if sid not in pos]
    if missing:
        raise KeyError(f"{len(missing)} pseudo-GT row(s) have no manifest row, e.g. {missing[:3]}")
    return man.take(pa.array([pos[sid] for sid in ids], type=pa.int64()))


def keypoints_in(annotations, convention: str, column: str = "keypoints_2d", conv_column: str = "keypoint_convention",
                 dims: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Manifest keypoints of every row (each in its own convention) -> ``(N, K, dims)`` in
    ``convention`` and the ``(N, K)`` mask of joints the row has (see :func:`annotator.body.joints.convert`)."""
    from annotator.body.joints import convert, get_convention

    n = annotations.num_rows
    k = get_convention(convention).num_joints
    out, present = np.zeros((n, k, dims), np.float32), np.zeros((n, k), bool)
    convs = np.asarray(annotations[conv_column].to_pylist(), dtype=object)
    values = annotations[column].to_pylist()
    for conv in sorted({c for c in convs if c}):
        rows = [i for i in np.nonzero(convs == conv)[0] if values[i]]
        if not rows:
            continue
        flat = np.asarray([values[i] for i in rows], np.float32).reshape(len(rows), -1, dims)
        kp, mask = convert(torch.from_numpy(flat), conv, convention)
        out[rows], present[rows] = kp.numpy(), mask.numpy()
    return out, present


class PseudoGTDataset(torch.utils.data.Dataset):
    """Crops + SMPL targets from pseudo-GT rows. Items are dicts of tensors."""

    def __init__(self, paths: str | Sequence[str], datasets: Sequence[str] | None = None,
                 max_err2d_norm: float | None = None, max_err2d_px: float | None = None,
                 crop_size: int = 224, bbox_scale: float = 1.2, manifest_root: str | None = None):
        from annotator.body.joints import TRAIN_CONVENTION

        table = scan_pseudo_gt(paths, datasets, max_err2d_norm, max_err2d_px)
        self.sample_id = table["sample_id"].to_pylist()
        self.image_path = table["image_path"].to_pylist()
        self.arrays = {c: np.stack(table[c].to_numpy(zero_copy_only=False)).astype(np.float32)
                       for c in ("bbox", "principal_point", *PARAM_WIDTHS)}
        self.arrays["focal_length"] = table["focal_length"].to_numpy().astype(np.float32)
        self.arrays["image_size"] = np.stack([table["image_width"].to_numpy(), table["image_height"].to_numpy()], 1).astype(np.float32)
        for c in ("err2d_px", "err2d_norm"):
            self.arrays[c] = np.array(table[c].to_pandas(), dtype=np.float32)
        kps = np.zeros((table.num_rows, 17, 3), np.float32)
        if table.num_rows:
            kps, _ = keypoints_in(annotations_for(table, paths, manifest_root), TRAIN_CONVENTION)
        self.arrays["keypoints_2d"] = kps[..., :2].copy()
        self.arrays["keypoints_conf"] = (kps[..., 2] > 0).astype(np.float32)
        params = np.concatenate([self.arrays[k] for k in PARAM_WIDTHS], axis=1)
        self.valid = np.isfinite(params).all(1) & np.isfinite(self.arrays["err2d_norm"])
        self.crop_size, self.bbox_scale = crop_size, bbox_scale

    def __len__(self) -> int:
        return len(self.sample_id)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from annotator.data.images import load_crops, normalize_images
        from annotator.geometry.cameras import bbox_info

        a = {k: torch.from_numpy(v[i : i + 1]) for k, v in self.arrays.items()}
        crops = load_crops([self.image_path[i]], a["bbox"].numpy(), self.crop_size, self.bbox_scale)
        if not crops.ok[0]:
            raise OSError(f"pseudo-GT row {self.sample_id[i]}: {crops.errors[0]}")
        center, box = torch.from_numpy(crops.center), torch.from_numpy(crops.box_size)
        item = {
            "img": normalize_images(crops.images)[0],
            "bbox_info": bbox_info(center, box, a["focal_length"], a["image_size"], a["principal_point"])[0],
            "center": center[0], "box_size": box[0],
            "focal": a["focal_length"][0], "principal_point": a["principal_point"][0],
        }
        item.update({k: a[k][0] for k in (*PARAM_WIDTHS, "keypoints_2d", "keypoints_conf", "err2d_px", "err2d_norm")})
        item["sample_id"] = self.sample_id[i]
        item["valid"] = torch.tensor(bool(self.valid[i]))
        return item
