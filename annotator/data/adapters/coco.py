"""COCO keypoints JSON (``person_keypoints_*.json``) -> candidate manifest rows.

* one instance per entry of ``annotations``; ``sample_id = "<dataset>/<annotation id>"``;
* keypoints ``[x, y, v] * 17`` (``coco17``): confidence = 1 where ``v > 0`` (1 = labelled
  but occluded, 2 = labelled and visible), 0 where ``v == 0``; the raw ``v`` goes to the
  ``visibility`` column; x/y are kept exactly as in the file;
* image size from the ``images`` record (0 -> read from the image header);
* crowd regions (``iscrowd=1``), non-keypoint categories, unknown image ids and malformed
  records become rejects (``crowd``, ``not_person``, ``unknown_image``, ``corrupt_file``,
  ``invalid_value``) so that nothing vanishes.

A file that is not JSON or lacks ``images``/``annotations`` raises ManifestError.
"""
from __future__ import annotations

import numpy as np

from annotator.config import DatasetConfig, ManifestConfig
from annotator.data.adapters.common import AdapterResult, image_root, resolve_image_path, source_ref
from annotator.data.adapters.json_stream import read_coco_slim
from annotator.data.manifest import ManifestError, columns_to_table, empty_rejects, rejects_table

CONVENTION = "coco17"
NUM_KEYPOINTS = 17


def _person_categories(data: dict) -> set | None:
    """Ids of categories with keypoints (None: no ``categories`` listed -> accept all)."""
    cats = data.get("categories")
    if not isinstance(cats, list):
        return None
    return {c.get("id") for c in cats if isinstance(c, dict) and (c.get("keypoints") or c.get("name") == "person")}


def _check_record(ann: dict) -> str | None:
    """Why an annotation record cannot be used as numbers, or None."""
    kps, box = ann.get("keypoints"), ann.get("bbox")
    if not isinstance(kps, list) or len(kps) != 3 * NUM_KEYPOINTS:
        return f"keypoints must be a list of {3 * NUM_KEYPOINTS} numbers, got {type(kps).__name__}" + (
            f" of length {len(kps)}" if isinstance(kps, list) else "")
    if not isinstance(box, list) or len(box) != 4:
        return f"bbox must be [x, y, w, h], got {box!r}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kps + box):
        return "keypoints/bbox contain non-numeric values"
    return None


def read_coco(ds: DatasetConfig, mcfg: ManifestConfig) -> AdapterResult:
    """Read a COCO keypoints file into candidate rows + adapter rejects."""
    path = ds.path
    data = read_coco_slim(path, "COCO annotation file")  # streamed: memory independent of the file size
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: COCO file must be a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise ManifestError(f"{path}: COCO file has no list {key!r}")
    root = image_root(ds.images, path)
    images: dict = {}
    listed: dict = {}  # image id -> positions in 'images' (a repeated id is ambiguous: its annotations are rejected)
    for k, im in enumerate(data["images"]):
        if isinstance(im, dict) and _is_id(im.get("id")) and "file_name" in im:
            images.setdefault(im["id"], im)
            listed.setdefault(im["id"], []).append(k)
    persons = _person_categories(data)

    keep: list[tuple[int, dict]] = []
    rej: dict[str, list] = {"sample_id": [], "reason": [], "detail": [], "source": []}

    def reject(sid: str, reason: str, detail: str, src: str) -> None:
        for k, v in zip(rej, (sid, reason, detail, src)):
            rej[k].append(v)

    for i, ann in enumerate(data["annotations"]):
        src = source_ref(path, f"annotations[{i}]")
        if not isinstance(ann, dict) or "id" not in ann:
            reject(f"{ds.name}/annotations[{i}]", "corrupt_file", "annotation is not an object with an 'id'", src)
            continue
        if not _is_id(ann["id"]):
            reject(f"{ds.name}/annotations[{i}]", "invalid_value",
                   f"annotation id must be an integer or a non-empty string, got {ann['id']!r}", src)
            continue
        sid = f"{ds.name}/{ann['id']}"
        src = source_ref(path, f"annotations[{i}] (id={ann['id']})")
        image_id = ann.get("image_id")
        if persons is not None and (not _is_id(ann.get("category_id")) or ann.get("category_id") not in persons):
            reject(sid, "not_person", f"category_id {ann.get('category_id')!r} has no keypoints", src)
        elif ann.get("iscrowd", 0):
            reject(sid, "crowd", "iscrowd=1 (crowd region, not a single person)", src)
        elif not _is_id(image_id) or image_id not in images:
            reject(sid, "unknown_image", f"image_id {image_id!r} is not in 'images'", src)
        elif len(listed[image_id]) > 1:
            reject(sid, "duplicate_id", f"image_id {image_id!r} is listed {len(listed[image_id])} times in 'images' "
                                        f"(images{listed[image_id]}): ambiguous", src)
        elif (problem := _check_record(ann)) is not None:
            reject(sid, "invalid_value", problem, src)
        elif not np.isfinite(np.asarray(ann["keypoints"][2::3], dtype=np.float64)).all():
            # (NaN x/y and boxes are found by the common checks; a NaN flag would read as "not labelled")
            reject(sid, "non_finite", "NaN/inf in a keypoint visibility flag", src)
        else:
            keep.append((i, ann))

    n = len(keep)
    kps = np.array([a["keypoints"] for _, a in keep], dtype=np.float64).reshape(n, NUM_KEYPOINTS, 3)
    conf = (kps[..., 2] > 0).astype(np.float64)
    ims = [images[a["image_id"]] for _, a in keep]
    focal = (np.full(n, ds.focal_length), np.ones(n, bool)) if ds.focal_length else None
    table = columns_to_table(
        n,
        sample_id=[f"{ds.name}/{a['id']}" for _, a in keep],
        dataset=ds.name,
        source=[source_ref(path, f"annotations[{i}] (id={a['id']})") for i, a in keep],
        image_path=[resolve_image_path(str(im["file_name"]), root) for im in ims],
        image_width=np.array([_int_or_zero(im.get("width")) for im in ims], dtype=np.int32),
        image_height=np.array([_int_or_zero(im.get("height")) for im in ims], dtype=np.int32),
        bbox=np.array([a["bbox"] for _, a in keep], dtype=np.float64).reshape(n, 4),
        keypoints_2d=np.concatenate([kps[..., :2], conf[..., None]], axis=-1).reshape(n, -1),
        visibility=(np.clip(kps[..., 2], -128, 127).astype(np.int8), np.ones(n, bool)),
        keypoint_convention=CONVENTION,
        focal_length=focal,
        has_smpl=False,
        has_3d=False,
    )
    rejects = rejects_table(rej["sample_id"], ds.name, rej["reason"], rej["detail"], rej["source"]) \
        if rej["sample_id"] else empty_rejects()
    return AdapterResult(table=table, rejects=rejects, input_count=len(data["annotations"]))


def _is_id(v: object) -> bool:
    """COCO ids are integers (strings accepted); null, bool, float, list, dict are not ids."""
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v != "")


def _int_or_zero(v: object) -> int:
    """Image size field -> int; missing/invalid -> 0 (= read it from the image header)."""
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0 else 0
