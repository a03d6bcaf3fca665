"""Downstream loader: a PyTorch ``Dataset`` over pseudo-GT Parquet (local or ``s3://``).

For training an estimator on the annotator's output::

    ds = PseudoGTDataset("runs/demo/pseudo_gt/wild", max_err2d_norm=0.1, crop_size=224)
    loader = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=8, shuffle=True)

Each item holds the crop (normalised, CLIFF crop conventions), the CLIFF bbox information
(Eq. 5) and the SMPL targets (axis-angle, camera frame). Filtering happens on the Parquet
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

COLUMNS = ("sample_id", "dataset", "image_path", "bbox", "image_width", "image_height", "focal_length",
           "principal_point", "keypoints_2d", "err2d_px", "err2d_norm", *PARAM_WIDTHS)


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


class PseudoGTDataset(torch.utils.data.Dataset):
    """Crops + SMPL targets from pseudo-GT rows. Items are dicts of tensors."""

    def __init__(self, paths: str | Sequence[str], datasets: Sequence[str] | None = None,
                 max_err2d_norm: float | None = None, max_err2d_px: float | None = None,
                 crop_size: int = 224, bbox_scale: float = 1.2):
        table = scan_pseudo_gt(paths, datasets, max_err2d_norm, max_err2d_px)
        self.sample_id = table["sample_id"].to_pylist()
        self.image_path = table["image_path"].to_pylist()
        self.arrays = {c: np.stack(table[c].to_numpy(zero_copy_only=False)).astype(np.float32)
                       for c in ("bbox", "principal_point", *PARAM_WIDTHS)}
        self.arrays["focal_length"] = table["focal_length"].to_numpy().astype(np.float32)
        self.arrays["image_size"] = np.stack([table["image_width"].to_numpy(), table["image_height"].to_numpy()], 1).astype(np.float32)
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
            "bbox_info": bbox_info(center, box, a["focal_length"], a["image_size"])[0],
            "center": center[0], "box_size": box[0],
            "focal": a["focal_length"][0], "principal_point": a["principal_point"][0],
        }
        item.update({k: a[k][0] for k in PARAM_WIDTHS})
        return item
