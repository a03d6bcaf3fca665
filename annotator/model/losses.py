"""Every training loss of the CLIFF annotator, in one place.

Each term is a small function returning a scalar; :func:`compute_losses` combines them
with the step's weights (:class:`~annotator.config.LossWeights` for the fully supervised
``pretrain`` and ``train-estimator``, :class:`~annotator.config.FinetuneLossWeights` for ``finetune``). Supervision that only some rows have is masked per row (``has_smpl``, ``has_3d``,
``has_prior``): a masked row contributes exactly nothing (value and gradient), and masked
means divide by the number of valid rows (SPIN), so a term's scale does not depend on how
many rows of a mixed batch carry it.

Default weights and their sources:

* CLIFF / SPIN: 2D keypoints 5.0, 3D joints 5.0, SMPL pose (rotation matrices) 1.0,
  SMPL betas 0.001;
* three-recipes paper (Moon et al., Table A / Sec. A): VPoser latent L2 1e-2 and shape
  L2 1e-2;
* CLIFF annotator step 3: regularisation towards the stored prior predictions, same form
  as the SMPL loss, scaled by ``prior_reg``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from annotator.body.joints import TRAIN_CONVENTION, get_convention
from annotator.body.prior import pose_prior_loss
from annotator.config import AuxLossWeights, FinetuneLossWeights, LossWeights
from annotator.geometry.crop import apply_affine
from annotator.geometry.rotations import axis_angle_to_matrix

MODES = ("pretrain", "finetune", "aux")

KEYPOINT_UNIT_FRACTION = 0.5
#: Smallest weak-perspective scale ``s`` the camera term lets pass unpenalised (SPIN's mean is 0.9).
#: Below ``s = 0`` the full-frame translation (CLIFF Eq. 7) clamps the depth, every keypoint
#: projects onto the box centre and the 2D loss has no gradient left: a dead state a network
#: never leaves. Measured: lr 1e-3 pretraining drove s to about -9 and froze the finetune's 2D error.
MIN_CAMERA_SCALE = 0.1
"""2D residuals are measured in units of half the square box side ``b / 2`` (full frame) or
half the crop side (crop frame). Dividing by the box size makes the loss scale-free across
persons: a 5 px error on a 100 px child far away weighs as much as a 25 px error on a
500 px person in front of the camera, instead of large persons dominating the batch. Half
the side is the normalisation of SPIN/HMR, whose crop keypoints live in [-1, 1]; with the
same unit their keypoint weight (5.0) carries over unchanged."""


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of per-row ``values`` (B,) over rows where ``mask`` (B,) is true; 0 if none.

    Rows outside the mask are selected away with ``where`` (not multiplied by 0), so a NaN
    in a masked row cannot leak into the value.
    """
    mask = mask.to(torch.bool)
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1).to(values.dtype)


def _clean_rows(target: Tensor, mask: Tensor) -> Tensor:
    """Replace rows outside ``mask`` by zeros, so NaN placeholders of unsupervised rows
    cannot produce NaN gradients through ``pred - target``."""
    keep = mask.to(torch.bool).reshape(-1, *([1] * (target.dim() - 1)))
    return torch.where(keep, target, torch.zeros_like(target))


def keypoint_2d_loss(pred: Tensor, target: Tensor, unit: Tensor) -> Tensor:
    """Confidence-weighted squared 2D error (SPIN's keypoint MSE; CLIFF Eq. 9 in full frame).

    Args:
        pred: (B, K, 2) predicted keypoints, px.
        target: (B, K, 3) ground-truth px + confidence (0 = absent).
        unit: (B,) px per unit of error (see :data:`KEYPOINT_UNIT_FRACTION`).

    Returns:
        ``mean(conf * ((pred - gt) / unit)^2)`` over rows, keypoints and both coordinates.
    """
    conf = target[..., 2].clamp(min=0)
    gt = torch.where(conf[..., None] > 0, target[..., :2], torch.zeros_like(target[..., :2]))
    residual = (pred - gt) / unit[:, None, None]
    return (conf[..., None] * residual.square()).mean()


def keypoint_2d_full_loss(decoded: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """CLIFF Eq. 9: full-image reprojection error in units of half the box side."""
    unit = KEYPOINT_UNIT_FRACTION * batch["box_size"].to(decoded["keypoints_2d"].dtype)
    return keypoint_2d_loss(decoded["keypoints_2d"], batch["keypoints_2d"], unit)


def keypoint_2d_crop_loss(decoded: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
    """HMR crop reprojection (CLIFF Eq. 3-4; ablation ``cliff-crop-loss``).

    Ground-truth keypoints go into crop px through the batch's ``affine``; the error is in
    units of half the crop side, comparable to :func:`keypoint_2d_full_loss`.
    """
    pred = decoded["keypoints_2d_crop"]
    target = batch["keypoints_2d"].to(pred.dtype)
    gt_crop = apply_affine(target[..., :2], batch["affine"].to(pred.dtype))
    crop_target = torch.cat([gt_crop, target[..., 2:3]], dim=-1)
    crop_size = batch["img"].shape[-1]
    unit = pred.new_full((pred.shape[0],), KEYPOINT_UNIT_FRACTION * crop_size)
    return keypoint_2d_loss(pred, crop_target, unit)


def joints_3d_loss(pred: Tensor, target: Tensor, mask: Tensor, root: list[int], norm: str = "l2") -> Tensor:
    """Root-aligned, confidence-weighted squared 3D joint error (CLIFF Eq. 3, SPIN); with
    ``norm="l1"`` the absolute error (NeuralAnnot's L_ax).

    Args:
        pred: (B, K, 3) predicted joints (any translation; it is removed by the alignment).
        target: (B, K, 4) ground-truth joints in metres + confidence.
        mask: (B,) rows that have 3D ground truth.
        root: joint indices whose mean is the root (the convention's ``root``: mid-hip for
            COCO/MPII, pelvis for SMPL/H36M). Rows whose ground-truth root joints have zero
            confidence cannot be aligned and get no 3D loss.
    """
    conf = target[..., 3].clamp(min=0)
    valid = mask.to(torch.bool) & (conf[:, root] > 0).all(dim=1)
    gt = _clean_rows(target[..., :3], valid)
    gt = torch.where(conf[..., None] > 0, gt, torch.zeros_like(gt))
    pred_rel = pred - pred[:, root].mean(dim=1, keepdim=True)
    gt_rel = gt - gt[:, root].mean(dim=1, keepdim=True)
    diff = pred_rel - gt_rel
    per_row = (conf[..., None] * (diff.abs() if norm == "l1" else diff.square())).mean(dim=(1, 2))
    return masked_mean(per_row, valid)


def smpl_param_loss(
    pred_rotmat: Tensor,
    pred_betas: Tensor,
    global_orient: Tensor,
    body_pose: Tensor,
    betas: Tensor,
    mask: Tensor,
) -> tuple[Tensor, Tensor]:
    """SMPL parameter loss (CLIFF Eq. 3 ``L_SMPL``, SPIN form): ``(pose_term, betas_term)``.

    The pose term is the MSE between predicted and target rotation matrices (targets come as
    axis-angle and are converted); the betas term is the MSE of the shape coefficients. Both
    are averaged over the rows in ``mask``.

    Args:
        pred_rotmat: (B, 24, 3, 3); pred_betas: (B, n).
        global_orient: (B, 3), body_pose: (B, 69): axis-angle targets; betas: (B, n) targets.
        mask: (B,) rows that have these targets.
    """
    if betas.shape[-1] != pred_betas.shape[-1]:
        raise ValueError(
            f"smpl_param_loss: target betas have {betas.shape[-1]} coefficients, the network predicts {pred_betas.shape[-1]}"
        )
    batch = pred_rotmat.shape[0]
    target_aa = torch.cat([global_orient, body_pose], dim=-1).to(pred_rotmat.dtype)
    target_aa = _clean_rows(target_aa, mask).reshape(batch, -1, 3)
    target_rotmat = axis_angle_to_matrix(target_aa)
    pose_rows = (pred_rotmat - target_rotmat).square().mean(dim=(1, 2, 3))
    betas_rows = (pred_betas - _clean_rows(betas.to(pred_betas.dtype), mask)).square().mean(dim=1)
    return masked_mean(pose_rows, mask), masked_mean(betas_rows, mask)


def pose_prior_latent_loss(vposer, body_pose: Tensor, mask: Tensor) -> Tensor:
    """VPoser latent L2 of the (B, 69) axis-angle body pose (three-recipes paper), averaged
    over ``mask`` rows. ``vposer`` must be in eval mode (frozen prior)."""
    return masked_mean(pose_prior_loss(vposer, body_pose), mask)


def pose_l2_loss(body_pose: Tensor, mask: Tensor) -> Tensor:
    """``||theta||^2`` of the (B, 69) axis-angle body pose (NeuralAnnot's L_ax regulariser), over ``mask`` rows."""
    return masked_mean(body_pose.square().sum(dim=1), mask)


def shape_l2_loss(betas: Tensor, mask: Tensor) -> Tensor:
    """``||betas||^2`` (three-recipes paper shape L2), averaged over ``mask`` rows."""
    return masked_mean(betas.square().sum(dim=1), mask)


def camera_scale_loss(crop_cam: Tensor) -> Tensor:
    """Hinge ``mean(relu(MIN_CAMERA_SCALE - s))`` on the crop camera scale: zero for every
    plausible camera, a constant push back where ``s`` collapsed (see :data:`MIN_CAMERA_SCALE`)."""
    return torch.relu(MIN_CAMERA_SCALE - crop_cam[:, 0].float()).mean()


def lifter_loss(pred_rotmat: Tensor, target_rotmat: Tensor, pred_keypoints: Tensor | None,
                target_keypoints: Tensor, keypoint_weight: float) -> dict[str, Tensor]:
    """The 2D-keypoint lifter's loss (:mod:`annotator.fitting.lifter`): SPIN's squared
    rotation-matrix error summed over the 24 rotations, plus ``keypoint_weight`` x the mean
    body-frame keypoint distance in metres (``pred_keypoints`` None: not computed)."""
    rotation = (pred_rotmat - target_rotmat).pow(2).sum(dim=(-1, -2)).sum(dim=1).mean()
    keypoints = torch.zeros((), dtype=rotation.dtype)
    if pred_keypoints is not None:
        keypoints = torch.linalg.norm(pred_keypoints - target_keypoints, dim=-1).mean()
    return {"loss": rotation + keypoint_weight * keypoints, "rotation": rotation, "keypoints": keypoints}


def ik_loss(pred_rotmat: Tensor, target_rotmat: Tensor, pred_betas: Tensor, target_betas: Tensor,
            pred_joints: Tensor, target_joints: Tensor, pred_vertices: Tensor, target_vertices: Tensor,
            weights: dict[str, float]) -> dict[str, Tensor]:
    """The IK network's loss (:mod:`annotator.fitting.ik`, *Best of both worlds* GIK-Net): L1 on
    ``theta`` (the 24 rotation matrices' entries), on ``beta``, on the joints and on the vertices
    (metres, both root-relative). ``weights``: ``theta``, ``beta``, ``joints``, ``vertices``."""
    terms = {
        "theta": (pred_rotmat - target_rotmat).abs().mean(),
        "beta": (pred_betas - target_betas).abs().mean(),
        "joints": (pred_joints - target_joints).abs().mean(),
        "vertices": (pred_vertices - target_vertices).abs().mean(),
    }
    terms["loss"] = sum(weights[k] * v for k, v in terms.items())
    return terms


def _require(batch: dict[str, Tensor], keys: tuple[str, ...], why: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"compute_losses: batch is missing {missing} needed for {why}")


def compute_losses(
    pred: dict[str, Tensor],
    decoded: dict[str, Tensor],
    batch: dict[str, Tensor],
    weights: LossWeights,
    mode: str,
    reprojection: str = "full",
    vposer=None,
    use_prior_reg: bool = True,
    convention: str = TRAIN_CONVENTION,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total training loss and its named, unweighted terms.

    Terms (each present only when the batch carries what it needs):

    * ``keypoints_2d`` (both modes, every row, by keypoint confidence): full frame (Eq. 9)
      or crop frame (``reprojection="crop"``);
    * ``joints_3d`` (rows with ``has_3d``), ``smpl_pose`` / ``smpl_betas`` (rows with
      ``has_smpl``): full supervision, in pretraining and for the aux3d rows of a finetune
      batch;
    * aux only (the aux-set annotator, NeuralAnnot's L_ax): ``joints_3d`` is the L1 error, plus
      ``pose_l2`` and ``betas_l2`` on every row;
    * finetune only: ``prior_pose`` / ``prior_betas`` (rows with ``has_prior``, weighted
      ``prior_reg * smpl_pose`` / ``prior_reg * smpl_betas``) when ``use_prior_reg`` and
      the batch carries ``has_prior`` (an aux3d-only part of a mixed batch may not);
      ``pose_prior`` (VPoser latent, if ``vposer`` is given) and ``shape_l2`` on the target
      rows, i.e. the rows without SMPL ground truth.

    Args:
        pred: CliffNet output; decoded: :func:`annotator.model.outputs.decode` output.
        batch: the batch contract.
        weights: loss weights of the step (``FinetuneLossWeights`` in finetune mode).
        mode: ``"pretrain"``, ``"finetune"`` or ``"aux"``.
        reprojection: ``"full"`` (CLIFF) or ``"crop"`` (HMR ablation).
        vposer: VPoser model for the latent pose prior, or None to skip it.
        use_prior_reg: False gives the ``cliff-no-prior-reg`` ablation.
        convention: keypoint convention of the batch's ``keypoints_2d`` / ``joints_3d`` and
            of ``decoded`` (gives the 3D root joints).

    Returns:
        ``(total, terms)``: the weighted sum (differentiable) and a dict of detached
        unweighted scalar terms plus ``"total"``.
    """
    if mode not in MODES:
        raise ValueError(f"compute_losses: mode must be one of {MODES}, got {mode!r}")
    if mode == "finetune" and not isinstance(weights, FinetuneLossWeights):
        raise TypeError("compute_losses: a finetune needs FinetuneLossWeights (prior_reg, pose_prior, shape_l2)")
    if mode == "aux" and not isinstance(weights, AuxLossWeights):
        raise TypeError("compute_losses: the aux-set annotator needs AuxLossWeights (pose_l2, betas_l2)")
    _require(batch, ("keypoints_2d", "box_size"), "the 2D keypoint loss")
    if reprojection == "full":
        kp_term = keypoint_2d_full_loss(decoded, batch)
    elif reprojection == "crop":
        _require(batch, ("affine", "img"), "the crop reprojection loss")
        kp_term = keypoint_2d_crop_loss(decoded, batch)
    else:
        raise ValueError(f"compute_losses: reprojection must be 'full' or 'crop', got {reprojection!r}")
    terms: dict[str, Tensor] = {"keypoints_2d": kp_term, "camera_scale": camera_scale_loss(pred["crop_cam"])}
    scale: dict[str, float] = {"keypoints_2d": weights.keypoints_2d, "camera_scale": weights.camera_scale}

    if "has_3d" in batch:
        _require(batch, ("joints_3d",), "the 3D joint loss (has_3d is set)")
        root = list(get_convention(convention).root)
        terms["joints_3d"] = joints_3d_loss(decoded["keypoints_3d"], batch["joints_3d"], batch["has_3d"], root,
                                            norm="l1" if mode == "aux" else "l2")
        scale["joints_3d"] = weights.joints_3d

    if mode == "aux":
        every = torch.ones(pred["betas"].shape[0], dtype=torch.bool, device=pred["betas"].device)
        terms["pose_l2"] = pose_l2_loss(decoded["body_pose"], every)
        terms["betas_l2"] = shape_l2_loss(pred["betas"], every)
        scale["pose_l2"], scale["betas_l2"] = weights.pose_l2, weights.betas_l2

    if "has_smpl" in batch:
        _require(batch, ("smpl_global_orient", "smpl_body_pose", "smpl_betas"), "the SMPL loss (has_smpl is set)")
        terms["smpl_pose"], terms["smpl_betas"] = smpl_param_loss(
            pred["rotmat"], pred["betas"], batch["smpl_global_orient"], batch["smpl_body_pose"],
            batch["smpl_betas"], batch["has_smpl"],
        )
        scale["smpl_pose"], scale["smpl_betas"] = weights.smpl_pose, weights.smpl_betas

    if mode == "finetune":
        if use_prior_reg and "has_prior" in batch:
            _require(batch, ("prior_global_orient", "prior_body_pose", "prior_betas"), "the prior regularisation (has_prior is set)")
            terms["prior_pose"], terms["prior_betas"] = smpl_param_loss(
                pred["rotmat"], pred["betas"], batch["prior_global_orient"], batch["prior_body_pose"],
                batch["prior_betas"], batch["has_prior"],
            )
            scale["prior_pose"] = weights.prior_reg * weights.smpl_pose
            scale["prior_betas"] = weights.prior_reg * weights.smpl_betas
        rows = pred["betas"].shape[0]
        has_smpl = batch.get("has_smpl")
        target_rows = ~has_smpl.to(torch.bool) if has_smpl is not None else torch.ones(
            rows, dtype=torch.bool, device=pred["betas"].device
        )
        if vposer is not None:
            terms["pose_prior"] = pose_prior_latent_loss(vposer, decoded["body_pose"], target_rows)
            scale["pose_prior"] = weights.pose_prior
        terms["shape_l2"] = shape_l2_loss(pred["betas"], target_rows)
        scale["shape_l2"] = weights.shape_l2

    total = sum(scale[name] * value for name, value in terms.items())
    report = {name: value.detach() for name, value in terms.items()}
    report["total"] = total.detach()
    return total, report
