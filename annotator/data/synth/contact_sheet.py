"""Contact sheets: a grid of dataset images with their 2D keypoints drawn.

Reads a synthetic dataset directory (COCO JSON for ``wild``, SPIN npz otherwise; the
image list and keypoints come from the annotation file the pipeline reads). Keypoints
are drawn green when visible and red when occluded; for npz datasets (which carry only
a confidence) the visibility flags of ``ground_truth.parquet`` are used when present.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from annotator import storage
from annotator.data.synth.pipeline import GT_FILE, IMAGES_DIR, SUMMARY_FILE, annotation_path
from annotator.body.joints import COCO17_SKELETON

VISIBLE = (40, 220, 40)
OCCLUDED = (230, 30, 30)
BONE = (255, 255, 255)


def _load_annotations(data_dir: str) -> tuple[str, dict[str, list[np.ndarray]]]:
    """``(domain, {file_name: [(17, 3) x, y, v per person]})`` of a synthetic dataset."""
    summary = storage.read_json(storage.join(data_dir, SUMMARY_FILE))
    domain = summary["config"]["domain"]
    per_image: dict[str, list[np.ndarray]] = {}
    path = annotation_path(data_dir, domain)
    if domain == "wild":
        doc = json.loads(storage.read_bytes(path))
        names = {im["id"]: im["file_name"] for im in doc["images"]}
        for name in names.values():
            per_image.setdefault(name, [])
        for ann in doc["annotations"]:
            per_image[names[ann["image_id"]]].append(np.asarray(ann["keypoints"], float).reshape(-1, 3))
        return domain, per_image
    data = np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)
    part = data["part"].copy()
    gt_path = storage.join(data_dir, GT_FILE)
    if storage.exists(gt_path):  # use the GT visibility flags (0/1/2) instead of the confidence
        with storage.open_file(gt_path) as fh:
            vis = pq.read_table(fh, columns=["visibility"]).column("visibility").to_pylist()
        part[..., 2] = np.asarray(vis, float)
    else:
        part[..., 2] *= 2
    for name, kps in zip(data["imgname"].astype(str), part):
        per_image.setdefault(name, []).append(kps)
    return domain, per_image


def contact_sheet(data_dir: str, out: str, columns: int = 4, rows: int = 3, tile: int = 256) -> int:
    """Write a PNG grid of the first ``columns * rows`` images; returns how many were drawn."""
    _, per_image = _load_annotations(data_dir)
    names = sorted(per_image)[: columns * rows]
    if not names:
        raise ValueError(f"{storage.redact(data_dir)}: the dataset has no images")
    sheet = Image.new("RGB", (columns * tile, rows * tile), (20, 20, 20))
    for i, name in enumerate(names):
        img = Image.open(io.BytesIO(storage.read_bytes(storage.join(data_dir, IMAGES_DIR, name)))).convert("RGB")
        scale = tile / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
        draw = ImageDraw.Draw(img)
        for kps in per_image[name]:
            pts = kps[:, :2] * scale
            for a, b in COCO17_SKELETON:
                if kps[a - 1, 2] > 0 and kps[b - 1, 2] > 0:
                    draw.line([tuple(pts[a - 1]), tuple(pts[b - 1])], fill=BONE, width=1)
            for (x, y), v in zip(pts, kps[:, 2]):
                if v > 0:
                    colour = VISIBLE if v == 2 else OCCLUDED
                    draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        sheet.paste(img, ((i % columns) * tile, (i // columns) * tile))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    storage.write_bytes_atomic(out, buf.getvalue())
    return len(names)
