"""Geometry: rotations, cameras (CLIFF crop <-> full), crops. Pure batched torch.

Conventions (camera frame, pixel coordinates, 6D layout) are documented in
:mod:`.rotations`, :mod:`.cameras` and :mod:`.crop`.
"""
from .cameras import (
    DEPTH_EPS,
    SCALE_EPS,
    bbox_info,
    cam_crop_to_full,
    cam_full_to_crop,
    crop_intrinsics,
    default_focal,
    intrinsics,
    perspective_projection,
    weak_perspective_to_translation,
)
from .crop import apply_affine, bbox_to_center_size, crop_affine, crop_grid, invert_affine
from .rotations import (
    axis_angle_to_matrix,
    axis_angle_to_rot6d,
    geodesic_distance,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_axis_angle,
    rot6d_to_matrix,
)

__all__ = [
    "DEPTH_EPS",
    "SCALE_EPS",
    "apply_affine",
    "axis_angle_to_matrix",
    "axis_angle_to_rot6d",
    "bbox_info",
    "bbox_to_center_size",
    "cam_crop_to_full",
    "cam_full_to_crop",
    "crop_affine",
    "crop_grid",
    "crop_intrinsics",
    "default_focal",
    "geodesic_distance",
    "intrinsics",
    "invert_affine",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "perspective_projection",
    "rot6d_to_axis_angle",
    "rot6d_to_matrix",
    "weak_perspective_to_translation",
]
