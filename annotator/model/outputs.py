"""Decode CliffNet predictions into SMPL parameters, a full-frame camera and keypoints.

The network predicts rotations, betas and a weak-perspective crop camera ``(s, tx, ty)``.
:func:`decode` turns them into everything the losses, the exporters and the evaluation use:

* axis-angle ``global_orient`` / ``body_pose`` and ``betas`` (the stored pseudo-GT format);
* ``transl``: the root translation in the full camera frame (CLIFF Eq. 7);
* ``vertices`` and ``keypoints_3d`` from the body model, run on the predicted rotation
  matrices directly (``pose2rot=False``: no round trip through axis-angle in the loss path);
* ``keypoints_2d``: 3D keypoints projected into the full image with the true focal length
  and principal point (CLIFF Eq. 8);
* ``keypoints_2d_crop``: the HMR projection into the crop (CLIFF Eq. 1 and 4), used by the
  ``cliff-crop-loss`` ablation.

Camera frame: OpenCV (x right, y down, z forward), metres, pixels.
"""
from __future__ import annotations

import torch

from annotator.body.joints import TRAIN_CONVENTION, get_convention, select_keypoints
from annotator.geometry.cameras import cam_crop_to_full, perspective_projection, weak_perspective_to_translation
from annotator.geometry.rotations import matrix_to_axis_angle

F_HMR = 5000.0
"""HMR's predefined focal length in px for the virtual crop camera (CLIFF Eq. 1). It is so
long that the crop projection is nearly orthographic, the assumption of the weak-perspective
camera ``(s, tx, ty)``."""

REPROJECTIONS = ("full", "crop")


def project_to_crop(points: torch.Tensor, crop_cam: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Project body-frame points (B, N, 3) into the crop in crop px (CLIFF Eq. 1 and 4).

    The virtual HMR crop camera has focal length :data:`F_HMR` and its principal point at the
    crop centre; its translation is ``(tx, ty, 2 * F_HMR / (r * s))`` with ``r`` the crop
    side. Dividing the result by the crop size gives the same units as full-frame pixels
    divided by the box size, since the crop is the box resampled to ``crop_size`` px.
    """
    batch = points.shape[0]
    focal = points.new_full((batch,), F_HMR)
    centre = points.new_full((batch, 2), crop_size / 2.0)
    transl = weak_perspective_to_translation(crop_cam, crop_size, F_HMR)
    return perspective_projection(points, focal, centre, translation=transl)


def decode(
    pred: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    body_model,
    convention: str = TRAIN_CONVENTION,
    reprojection: str = "full",
) -> dict[str, torch.Tensor]:
    """Turn network outputs into SMPL parameters, full-frame translation and keypoints.

    Args:
        pred: :class:`~annotator.model.cliff.CliffNet` output (``rotmat``, ``betas``, ``crop_cam``).
        batch: the batch contract; uses ``img`` (for the crop size), ``center``,
            ``box_size``, ``focal``, ``principal_point``, ``image_size``.
        body_model: :class:`annotator.body.BodyModel`.
        convention: keypoint convention of ``keypoints_3d`` / ``keypoints_2d`` (the one of
            the batch's ``keypoints_2d``).
        reprojection: ``"full"`` or ``"crop"``; both projections are always returned (they
            are cheap), this only validates the name so typos fail here.

    Returns:
        ``global_orient`` (B, 3), ``body_pose`` (B, 69), ``betas`` (B, n_betas) axis-angle
        SMPL parameters; ``transl`` (B, 3) full-frame root translation (metres);
        ``vertices`` (B, V, 3) and ``keypoints_3d`` (B, K, 3) in the camera orientation but
        WITHOUT translation; ``keypoints_2d`` (B, K, 2) full-image px;
        ``keypoints_2d_crop`` (B, K, 2) crop px (HMR camera). All float32.
    """
    if reprojection not in REPROJECTIONS:
        raise ValueError(f"reprojection must be one of {REPROJECTIONS}, got {reprojection!r}")
    for key in ("img", "center", "box_size", "focal", "principal_point", "image_size"):
        if key not in batch:
            raise KeyError(f"decode: batch is missing {key!r}")
    # Geometry runs in float32 even inside an autocast region: pixel coordinates of a large
    # image need more than bf16's ~3 significant digits for a meaningful reprojection loss.
    with torch.autocast(device_type=pred["rotmat"].device.type, enabled=False):
        rotmat, betas, crop_cam = (pred[k].float() for k in ("rotmat", "betas", "crop_cam"))
        batch_size = rotmat.shape[0]
        crop_size = int(batch["img"].shape[-1])
        center, box_size, image_size, focal, principal_point = (
            batch[k].float() for k in ("center", "box_size", "image_size", "focal", "principal_point")
        )

        body = body_model.forward(
            global_orient=rotmat[:, :1], body_pose=rotmat[:, 1:], betas=betas, pose2rot=False
        )
        keypoints_3d = select_keypoints(body.keypoints, body_model.keypoint_names, convention)
        # Eq. 7 with the box centre measured from the principal point (the optical axis), so
        # the translation is consistent with the projection below.
        transl = cam_crop_to_full(crop_cam, center, box_size, image_size, focal, principal_point=principal_point)
        keypoints_2d = perspective_projection(keypoints_3d, focal, principal_point, translation=transl)
        keypoints_2d_crop = project_to_crop(keypoints_3d, crop_cam, crop_size)
        axis_angle = matrix_to_axis_angle(rotmat)  # (B, 24, 3)

    return {
        "global_orient": axis_angle[:, 0],
        "body_pose": axis_angle[:, 1:].reshape(batch_size, -1),
        "betas": betas,
        "transl": transl,
        "vertices": body.vertices,
        "keypoints_3d": keypoints_3d,
        "keypoints_2d": keypoints_2d,
        "keypoints_2d_crop": keypoints_2d_crop,
    }


@torch.no_grad()
def smpl_joint_targets(batch: dict[str, torch.Tensor], body_model, convention: str = TRAIN_CONVENTION) -> dict[str, torch.Tensor]:
    """Fill the 3D joint supervision of rows that have SMPL parameters but no 3D joints.

    Pseudo-GT rows (the indirect-error estimator's training data) carry SMPL parameters
    only; their 3D joints are the body model's keypoints of those parameters, so the
    estimator gets the same full supervision (SMPL + 3D joints + 2D) as ``aux3d`` rows.
    Returns a shallow copy of ``batch`` with ``joints_3d`` (B, K, 4) and ``has_3d`` set."""
    if "has_smpl" not in batch:
        return batch
    has_smpl = batch["has_smpl"].bool()
    has_3d = batch["has_3d"].bool() if "has_3d" in batch else torch.zeros_like(has_smpl)
    rows = has_smpl & ~has_3d
    if not rows.any():
        return batch
    out = dict(batch)
    k = len(get_convention(convention).joint_names)
    joints = batch["joints_3d"].clone() if "joints_3d" in batch else has_smpl.new_zeros((len(has_smpl), k, 4), dtype=torch.float32)
    idx = rows.nonzero().squeeze(1)
    body = body_model.forward(global_orient=batch["smpl_global_orient"][idx], body_pose=batch["smpl_body_pose"][idx],
                              betas=batch["smpl_betas"][idx])
    joints[idx, :, :3] = select_keypoints(body.keypoints, body_model.keypoint_names, convention).float()
    joints[idx, :, 3] = 1.0
    out["joints_3d"], out["has_3d"] = joints, has_3d | rows
    return out

