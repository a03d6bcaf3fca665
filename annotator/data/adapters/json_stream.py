"""Streamed reading of COCO-format annotation files (``ijson``): memory independent of file size.

``json.loads`` of a COCO file builds every annotation's ``segmentation`` polygons (most of the
bytes) as Python objects: a 200 MB file peaked at 2.25 GB RSS. :func:`read_coco_slim` parses
the file incrementally in two passes (``images``/``categories`` may come before or after
``annotations``) and keeps only the fields the manifest uses, so the parse itself holds one
record at a time and what stays is proportional to the number of instances, not to the file.
The result has the same structure as the parsed file (a dict with ``images``,
``annotations``, ``categories`` lists of dicts), so the adapter code is unchanged and the
manifest is identical (a test compares it with the ``json.loads`` path).
"""
from __future__ import annotations

from annotator import storage
from annotator.data.manifest import ManifestError

#: Annotation / image fields the COCO adapter reads; everything else (segmentation, area,
#: num_keypoints, licenses, ...) is skipped while streaming.
ANNOTATION_FIELDS = ("id", "image_id", "category_id", "iscrowd", "keypoints", "bbox")
IMAGE_FIELDS = ("id", "file_name", "width", "height")
CATEGORY_FIELDS = ("id", "name", "keypoints")


def _slim(record, fields):
    if not isinstance(record, dict):
        return record  # the adapter rejects it with its own message
    return {k: record[k] for k in fields if k in record}


def _open(path: str, what: str):
    try:
        return storage.open_file(path, "rb")
    except FileNotFoundError:
        raise ManifestError(f"{storage.redact(path)}: {what} not found") from None
    except (OSError, ValueError) as err:
        raise ManifestError(f"{storage.redact(path)}: cannot read {what}: {err}") from None


def read_coco_slim(path: str, what: str = "COCO annotation file") -> object:
    """The COCO file at ``path`` as ``{"images": [...], "annotations": [...], "categories": [...]}``
    with only :data:`IMAGE_FIELDS` / :data:`ANNOTATION_FIELDS` / :data:`CATEGORY_FIELDS` kept; a
    missing top-level list stays missing; a top level that is not an object is returned as the
    type name's empty value (the adapter reports it). ManifestError if the file is not JSON."""
    import ijson

    out: dict = {}
    wanted = {"images": IMAGE_FIELDS, "categories": CATEGORY_FIELDS}
    try:
        with _open(path, what) as f:  # pass 1: top-level shape, images, categories
            builder = key = None
            for prefix, event, value in ijson.parse(f, use_float=True):
                if prefix == "" and event in ("start_array", "string", "number", "boolean", "null"):
                    return [] if event == "start_array" else value  # not an object: the adapter says so
                if prefix == "" and event == "map_key":
                    key = value
                    continue
                if key in wanted and (prefix == key or prefix.startswith(key + ".")):
                    if builder is None:
                        builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                    if prefix == key and event in ("end_array", "end_map", "string", "number", "boolean", "null"):
                        v = builder.value
                        out[key] = [_slim(r, wanted[key]) for r in v] if isinstance(v, list) else v
                        builder = None
                elif key == "annotations" and prefix == key and event == "start_array":
                    out["annotations"] = []
                elif key == "annotations" and prefix == key and event not in ("end_array",) and \
                        "annotations" not in out:
                    out["annotations"] = None  # present but not a list
        if isinstance(out.get("annotations"), list):
            with _open(path, what) as f:  # pass 2: the annotations, one record at a time
                out["annotations"] = [_slim(a, ANNOTATION_FIELDS)
                                      for a in ijson.items(f, "annotations.item", use_float=True)]
    except ijson.JSONError:
        # Not strict JSON (e.g. NaN/Infinity, which Python's json accepts and then the adapter
        # rejects per record): parse it whole, as before streaming.
        from annotator.data.adapters.common import read_json_file

        data = read_json_file(path, what)
        if not isinstance(data, dict):
            return data
        return {k: [_slim(r, f) for r in data[k]] if isinstance(data.get(k), list) else data[k]
                for k, f in (("images", IMAGE_FIELDS), ("annotations", ANNOTATION_FIELDS),
                             ("categories", CATEGORY_FIELDS)) if k in data}
    if out.get("annotations") is None:
        out.pop("annotations", None)
    return out
