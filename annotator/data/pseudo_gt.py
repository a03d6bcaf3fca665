"""The pseudo-GT output contract (``prior/<dataset>/`` and ``pseudo_gt/<dataset>/``).

One row per annotated person instance, axis-angle SMPL parameters in the full-image
camera frame (OpenCV axes: x right, y down, z forward; metres), so that::

    body = smplx.SMPL(model_path, ...)   # or annotator.body.load_body_model(...).smpl
    out = body(global_orient=t(row.global_orient)[None], body_pose=t(row.body_pose)[None],
               betas=t(row.betas)[None], transl=t(row.transl)[None])

reconstructs the mesh in the camera frame; projecting it with ``focal_length`` and
``principal_point`` overlays it on the image. Documented column by column in
``schemas/pseudo_gt.v1.json`` (kept in sync by a test).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

SCHEMA_VERSION = "1"

PARAM_WIDTHS = {"global_orient": 3, "body_pose": 69, "betas": 10, "transl": 3, "crop_cam": 3}


def _f32list(n: int | None = None) -> pa.DataType:
    return pa.list_(pa.float32(), n) if n else pa.list_(pa.float32())


PSEUDO_GT_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("bbox", _f32list(4), nullable=False),
        pa.field("image_width", pa.int32(), nullable=False),
        pa.field("image_height", pa.int32(), nullable=False),
        pa.field("focal_length", pa.float32(), nullable=False),
        pa.field("principal_point", _f32list(2), nullable=False),
        pa.field("global_orient", _f32list(3), nullable=False),
        pa.field("body_pose", _f32list(69), nullable=False),
        pa.field("betas", _f32list(10), nullable=False),
        pa.field("transl", _f32list(3), nullable=False),
        pa.field("crop_cam", _f32list(3), nullable=False),
        pa.field("keypoint_convention", pa.string(), nullable=False),
        pa.field("keypoints_2d", _f32list(), nullable=False),
        pa.field("err2d_px", pa.float32(), nullable=True),
        pa.field("err2d_norm", pa.float32(), nullable=True),
        pa.field("method", pa.string(), nullable=False),
        pa.field("checkpoint_id", pa.string(), nullable=False),
        pa.field("body_model_id", pa.string(), nullable=False),
        pa.field("body_model_checksum", pa.string(), nullable=False),
    ],
    metadata={"schema": "annotator.pseudo_gt", "schema_version": SCHEMA_VERSION},
)


#: Column documentation (units and meaning) for ``schemas/pseudo_gt.v1.json``.
COLUMN_DOCS = {
    "sample_id": ("", "Stable id `<dataset>/<annotation id>`, the manifest row this annotates."),
    "dataset": ("", "Dataset name from the job file."),
    "image_path": ("", "Image path or URL."),
    "bbox": ("px", "Person box x, y, w, h in the full image."),
    "image_width": ("px", "Full image width."),
    "image_height": ("px", "Full image height."),
    "focal_length": ("px", "Focal length used (known, or sqrt(w^2 + h^2) as in CLIFF)."),
    "principal_point": ("px", "Principal point cx, cy (image centre unless known)."),
    "global_orient": ("rad", "SMPL root orientation, axis-angle, camera frame (OpenCV: x right, y down, z forward)."),
    "body_pose": ("rad", "SMPL body pose, 23 joints x axis-angle."),
    "betas": ("", "SMPL shape coefficients (10)."),
    "transl": ("m", "SMPL translation in the camera frame (CLIFF Eq. 7 full-frame camera)."),
    "crop_cam": ("", "Weak-perspective crop camera (s, tx, ty) the network predicted."),
    "keypoint_convention": ("", "Convention of keypoints_2d (coco17)."),
    "keypoints_2d": ("px", "Projected model keypoints, flattened K x (x, y), full image."),
    "err2d_px": ("px", "Mean confidence-weighted distance to the annotated 2D keypoints (null if none)."),
    "err2d_norm": ("", "err2d_px divided by the square crop box side."),
    "method": ("", "Method label of the row's annotator (methods.label): e.g. cliff, prior, smplify, lifter, spin, spin-fits (the final fits of method spin), cliff-2nd, ik and neuralannot-aux (aux sets), estimator (indirect error); ablations add a suffix (cliff-no-bbox)."),
    "checkpoint_id": ("", "Network checkpoint: `<step>:<sha256 prefix>`."),
    "body_model_id": ("", "Body model id (e.g. open-anny-0.6.2-v1 or smpl:SMPL_NEUTRAL.pkl)."),
    "body_model_checksum": ("", "sha256 of the body model file the parameters belong to."),
}


def schema_document() -> dict:
    """The JSON documentation of :data:`PSEUDO_GT_SCHEMA` (``schemas/pseudo_gt.v1.json``)."""
    return {
        "schema": "annotator.pseudo_gt", "version": SCHEMA_VERSION,
        "description": "One row per annotated person instance; files pseudo_gt/<dataset>/part-NNNNN.parquet "
                       "mirror manifest/<dataset>/part-NNNNN.parquet. prior/<dataset>/ has the same schema.",
        "columns": [{"name": f.name, "arrow_type": str(f.type), "nullable": f.nullable,
                     "unit": COLUMN_DOCS[f.name][0], "description": COLUMN_DOCS[f.name][1]} for f in PSEUDO_GT_SCHEMA],
    }


def to_table(columns: dict[str, np.ndarray]) -> pa.Table:
    """numpy columns (2D arrays for list columns) -> a table with exactly PSEUDO_GT_SCHEMA."""
    arrays = []
    for field in PSEUDO_GT_SCHEMA:
        val = columns[field.name]
        if pa.types.is_list(field.type) or pa.types.is_fixed_size_list(field.type):
            arr2d = np.asarray(val, dtype=np.float32)
            flat = pa.array(arr2d.reshape(-1), type=pa.float32())
            if pa.types.is_fixed_size_list(field.type):
                arrays.append(pa.FixedSizeListArray.from_arrays(flat, field.type.list_size))
            else:
                offsets = np.arange(0, arr2d.size + 1, max(arr2d.shape[1], 1) if arr2d.ndim == 2 else 1, dtype=np.int32)
                arrays.append(pa.ListArray.from_arrays(pa.array(offsets[: len(arr2d) + 1]), flat))
        else:
            arrays.append(pa.array(np.asarray(val).tolist(), type=field.type))
    return pa.Table.from_arrays(arrays, schema=PSEUDO_GT_SCHEMA)
