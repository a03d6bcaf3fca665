"""Losses: masks, exact solutions, weighting, modes, and a one-batch overfit with the real body model."""
from __future__ import annotations

import math

import pytest
import torch

from annotator.body.prior import VPoser, pose_prior_loss
from annotator.config import FinetuneLossWeights, LossWeights, NetworkConfig
from annotator.geometry.crop import crop_affine, invert_affine
from annotator.geometry.rotations import axis_angle_to_matrix
from annotator.model.cliff import CliffNet
from annotator.model.losses import (
    compute_losses,
    joints_3d_loss,
    keypoint_2d_loss,
    masked_mean,
    smpl_param_loss,
)
from annotator.model.outputs import decode

CROP = 64
COCO17_HIPS = [11, 12]
STEPS = 15
"""Adam steps of the overfit test (~0.15 s each on one CPU thread)."""


pytestmark = pytest.mark.usefixtures("single_thread")


def _geometry(batch: int) -> dict[str, torch.Tensor]:
    """Two persons in a 640x480 image: one near the centre, one off to the left, different sizes."""
    center = torch.tensor([[330.0, 250.0], [140.0, 260.0]])[:batch]
    box_size = torch.tensor([300.0, 180.0])[:batch]
    image_size = torch.tensor([[640.0, 480.0]]).expand(batch, 2).clone()
    focal = torch.full((batch,), 800.0)
    principal_point = image_size / 2 + torch.tensor([4.0, -3.0])  # not exactly the centre
    return {
        "img": torch.zeros(batch, 3, CROP, CROP),
        "center": center,
        "box_size": box_size,
        "image_size": image_size,
        "focal": focal,
        "principal_point": principal_point,
        "affine": crop_affine(center, box_size, CROP),
        "bbox_info": torch.cat([(center - image_size / 2) / focal[:, None], (box_size / focal)[:, None]], 1),
    }


def _known_prediction(batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A plausible person: upright facing the camera, small random body pose and shape."""
    gen = torch.Generator().manual_seed(seed)
    root = torch.tensor([math.pi, 0.0, 0.0]) + 0.1 * torch.randn(batch, 3, generator=gen)
    body = 0.2 * torch.randn(batch, 23, 3, generator=gen)
    rotmat = axis_angle_to_matrix(torch.cat([root[:, None], body], dim=1))
    return {
        "rotmat": rotmat,
        "pose_6d": rotmat[..., :2].reshape(batch, 144),
        "betas": 0.5 * torch.randn(batch, 10, generator=gen),
        "crop_cam": torch.tensor([[0.85, 0.05, 0.1], [0.9, -0.05, 0.0]])[:batch],
    }


def _supervised_batch(body_model, batch: int = 2) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A batch whose every target is produced by one known prediction (so that prediction has loss 0)."""
    data = _geometry(batch)
    truth = _known_prediction(batch)
    with torch.no_grad():
        dec = decode(truth, data, body_model)
    ones = torch.ones(batch, 17, 1)
    data.update(
        keypoints_2d=torch.cat([dec["keypoints_2d"], ones], -1),
        joints_3d=torch.cat([dec["keypoints_3d"] + dec["transl"][:, None], ones], -1),
        has_3d=torch.ones(batch, dtype=torch.bool),
        smpl_global_orient=dec["global_orient"],
        smpl_body_pose=dec["body_pose"],
        smpl_betas=dec["betas"],
        has_smpl=torch.ones(batch, dtype=torch.bool),
    )
    return data, truth


# ---------------------------------------------------------------- decode


def test_decode_shapes_and_full_frame_consistency(body_model):
    data = _geometry(2)
    pred = _known_prediction(2)
    out = decode(pred, data, body_model)
    assert out["global_orient"].shape == (2, 3) and out["body_pose"].shape == (2, 69)
    assert out["transl"].shape == (2, 3) and out["vertices"].shape[0] == 2
    assert out["keypoints_3d"].shape == (2, 17, 3)
    assert out["keypoints_2d"].shape == (2, 17, 2) and out["keypoints_2d_crop"].shape == (2, 17, 2)
    # Axis-angle output reproduces the predicted matrices.
    aa = torch.cat([out["global_orient"][:, None], out["body_pose"].reshape(2, 23, 3)], 1)
    assert torch.allclose(axis_angle_to_matrix(aa), pred["rotmat"], atol=1e-5)
    # The person lands inside its box in the full image (Eq. 7 + projection are consistent).
    offset = (out["keypoints_2d"] - data["center"][:, None]).abs().amax(dim=(1, 2))
    assert bool((offset < data["box_size"] / 2).all())
    # The crop projection maps back (through the inverse crop affine) close to the full one:
    # the crop camera is weak-perspective-like, so they differ by perspective effects only.
    back = invert_affine(data["affine"])
    crop_in_full = out["keypoints_2d_crop"] @ back[:, :, :2].transpose(1, 2) + back[:, None, :, 2]
    err = (crop_in_full - out["keypoints_2d"]).norm(dim=-1).amax(dim=1) / data["box_size"]
    assert bool((err < 0.1).all()), err


def test_mean_init_decodes_to_upright_person_facing_camera(body_model):
    torch.manual_seed(0)
    net = CliffNet(NetworkConfig(), CROP).eval()
    data = _geometry(2)
    with torch.no_grad():
        out = decode(net(torch.randn(2, 3, CROP, CROP), data["bbox_info"]), data, body_model)
    kp2d, kp3d = out["keypoints_2d"], out["keypoints_3d"]
    nose, hips, ankles = kp2d[:, 0], kp2d[:, 11:13].mean(1), kp2d[:, 15:17].mean(1)
    assert bool((nose[:, 1] < hips[:, 1]).all()) and bool((hips[:, 1] < ankles[:, 1]).all())  # head up (smaller y)
    assert bool((kp2d[:, 5, 0] > kp2d[:, 6, 0]).all())  # the person's left shoulder is on the image right
    assert bool((kp3d[:, 0, 2] < kp3d[:, 3:5, 2].mean(1)).all())  # nose closer to the camera than the ears
    assert bool((out["transl"][:, 2] > 0).all())  # in front of the camera


# ---------------------------------------------------------------- individual terms


def test_masked_mean_ignores_nan_in_masked_rows():
    values = torch.tensor([1.0, float("nan"), 3.0])
    assert float(masked_mean(values, torch.tensor([True, False, True]))) == 2.0
    assert float(masked_mean(values, torch.zeros(3, dtype=torch.bool))) == 0.0


def test_smpl_loss_masked_row_has_no_value_or_gradient():
    pred = _known_prediction(2)
    rotmat = pred["rotmat"].clone().requires_grad_(True)
    betas = pred["betas"].clone().requires_grad_(True)
    target_orient = torch.tensor([[math.pi / 2, 0.0, 0.0], [float("nan")] * 3])
    target_pose = torch.zeros(2, 69)
    target_pose[1] = float("nan")
    target_betas = torch.ones(2, 10)
    mask = torch.tensor([True, False])
    pose_term, betas_term = smpl_param_loss(rotmat, betas, target_orient, target_pose, target_betas, mask)
    (pose_term + betas_term).backward()
    assert torch.isfinite(pose_term) and torch.isfinite(betas_term)
    assert torch.count_nonzero(rotmat.grad[1]) == 0 and torch.count_nonzero(betas.grad[1]) == 0
    assert torch.count_nonzero(rotmat.grad[0]) > 0 and torch.count_nonzero(betas.grad[0]) > 0
    # Equal to the loss of the valid row alone.
    alone = smpl_param_loss(rotmat[:1], betas[:1], target_orient[:1], target_pose[:1], target_betas[:1], mask[:1])
    assert torch.allclose(pose_term, alone[0]) and torch.allclose(betas_term, alone[1])
    assert betas_term.item() == pytest.approx(float(((pred["betas"][0] - 1) ** 2).mean()), rel=1e-6)


def test_joints_3d_loss_is_root_aligned_and_confidence_weighted():
    gen = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 17, 3, generator=gen)
    target = torch.cat([gt, torch.ones(2, 17, 1)], -1)
    mask = torch.ones(2, dtype=torch.bool)
    shifted = gt + torch.tensor([0.3, -1.0, 4.0])  # a pure translation is not an error
    assert float(joints_3d_loss(shifted, target, mask, COCO17_HIPS)) == pytest.approx(0.0, abs=1e-10)
    moved = shifted.clone()
    moved[:, 0] += torch.tensor([0.0, 0.1, 0.0])  # the nose 10 cm off: 0.01 m^2 over 17*3 entries
    assert float(joints_3d_loss(moved, target, mask, COCO17_HIPS)) == pytest.approx(0.01 / 51, rel=1e-4)
    target[:, 0, 3] = 0.0  # unconfident joint: ignored
    assert float(joints_3d_loss(moved, target, mask, COCO17_HIPS)) == pytest.approx(0.0, abs=1e-10)
    target[0, 11, 3] = 0.0  # row 0 has no left hip -> cannot be aligned -> no 3D loss
    moved[0, 5] += 1.0
    assert float(joints_3d_loss(moved, target, mask, COCO17_HIPS)) == pytest.approx(0.0, abs=1e-10)


def test_keypoint_loss_is_in_units_of_the_box():
    target = torch.tensor([[[100.0, 100.0, 1.0], [0.0, 0.0, 0.0]]])
    pred = torch.tensor([[[110.0, 100.0], [500.0, 500.0]]])  # 10 px off; absent keypoint ignored
    small = keypoint_2d_loss(pred, target, torch.tensor([50.0]))
    big = keypoint_2d_loss(pred * 2, target * torch.tensor([2.0, 2.0, 1.0]), torch.tensor([100.0]))
    assert float(small) == pytest.approx((10 / 50) ** 2 / 4)  # mean over 2 keypoints x 2 coordinates
    assert float(big) == pytest.approx(float(small))  # same error relative to the box -> same loss


# ---------------------------------------------------------------- compute_losses


def test_exact_solution_has_zero_loss_full_and_crop(body_model):
    data, truth = _supervised_batch(body_model)
    decoded = decode(truth, data, body_model)
    total, terms = compute_losses(truth, decoded, data, LossWeights(), "pretrain", "full")
    assert set(terms) == {"keypoints_2d", "camera_scale", "joints_3d", "smpl_pose", "smpl_betas", "total"}
    assert all(float(v) < 1e-8 for v in terms.values()), terms

    # Crop ablation: the crop-frame targets of the same truth give zero crop loss.
    crop_data = dict(data)
    back = invert_affine(data["affine"])
    gt_full = decoded["keypoints_2d_crop"] @ back[:, :, :2].transpose(1, 2) + back[:, None, :, 2]
    crop_data["keypoints_2d"] = torch.cat([gt_full, torch.ones(2, 17, 1)], -1)
    _, crop_terms = compute_losses(truth, decoded, crop_data, LossWeights(), "pretrain", "crop")
    assert float(crop_terms["keypoints_2d"]) < 1e-8

    # A wrong camera is penalised by both, by similar amounts (same units: half box / half crop).
    wrong = dict(truth, crop_cam=truth["crop_cam"] + torch.tensor([0.0, 0.1, 0.0]))
    wrong_dec = decode(wrong, data, body_model)
    full = compute_losses(wrong, wrong_dec, data, LossWeights(), "pretrain", "full")[1]["keypoints_2d"]
    crop = compute_losses(wrong, wrong_dec, crop_data, LossWeights(), "pretrain", "crop")[1]["keypoints_2d"]
    assert float(full) > 1e-4 and float(crop) > 1e-4
    assert 0.75 < float(full) / float(crop) < 1.33  # measured ratio 1.03


def test_total_is_weighted_sum_and_modes_select_terms(body_model):
    data, truth = _supervised_batch(body_model)
    pred = _known_prediction(2, seed=7)  # a different person: every term is non-zero
    decoded = decode(pred, data, body_model)
    weights = FinetuneLossWeights(keypoints_2d=2.0, joints_3d=3.0, smpl_pose=0.5, smpl_betas=0.25, prior_reg=4.0,
                                  shape_l2=0.1)
    total, terms = compute_losses(pred, decoded, data, weights, "pretrain")
    expected = 2.0 * terms["keypoints_2d"] + 3.0 * terms["joints_3d"] + 0.5 * terms["smpl_pose"] + 0.25 * terms["smpl_betas"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(float(terms[k]) > 0 for k in ("keypoints_2d", "joints_3d", "smpl_pose", "smpl_betas"))

    # Finetune: row 0 is an aux3d row (full supervision), row 1 a target row (2D + prior).
    ft = dict(data, has_smpl=torch.tensor([True, False]), has_3d=torch.tensor([True, False]))
    _, without_prior = compute_losses(pred, decoded, ft, weights, "finetune")  # e.g. an aux3d-only part
    assert "prior_pose" not in without_prior and "shape_l2" in without_prior
    with pytest.raises(KeyError, match=r"missing \['prior_global_orient', 'prior_body_pose', 'prior_betas'\]"):
        compute_losses(pred, decoded, dict(ft, has_prior=torch.ones(2, dtype=torch.bool)), weights, "finetune")
    ft.update(
        prior_global_orient=data["smpl_global_orient"], prior_body_pose=data["smpl_body_pose"],
        prior_betas=data["smpl_betas"], has_prior=torch.tensor([False, True]),
    )
    total, terms = compute_losses(pred, decoded, ft, weights, "finetune")
    assert set(terms) == {"keypoints_2d", "camera_scale", "joints_3d", "smpl_pose", "smpl_betas", "prior_pose", "prior_betas", "shape_l2",
                          "total"}
    # shape_l2 only on the target row (row 1).
    assert float(terms["shape_l2"]) == pytest.approx(float((pred["betas"][1] ** 2).sum()), rel=1e-6)
    expected = (2.0 * terms["keypoints_2d"] + 3.0 * terms["joints_3d"] + 0.5 * terms["smpl_pose"]
                + 0.25 * terms["smpl_betas"] + 4.0 * 0.5 * terms["prior_pose"] + 4.0 * 0.25 * terms["prior_betas"]
                + 0.1 * terms["shape_l2"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    _, no_prior = compute_losses(pred, decoded, ft, weights, "finetune", use_prior_reg=False)
    assert "prior_pose" not in no_prior and "prior_betas" not in no_prior

    # VPoser latent prior: target rows only, gradient reaches the predicted rotations.
    torch.manual_seed(0)
    vposer = VPoser().eval()
    rotmat = pred["rotmat"].clone().requires_grad_(True)
    grad_pred = dict(pred, rotmat=rotmat)
    total, terms = compute_losses(grad_pred, decode(grad_pred, data, body_model), ft, weights, "finetune", vposer=vposer)
    expected_prior = pose_prior_loss(vposer, decoded["body_pose"][1:])[0]
    assert terms["pose_prior"].item() == pytest.approx(expected_prior.item(), rel=1e-5)
    only_prior = FinetuneLossWeights(keypoints_2d=0, joints_3d=0, smpl_pose=0, smpl_betas=0, prior_reg=0, shape_l2=0,
                                     pose_prior=1e-2)
    prior_total, _ = compute_losses(grad_pred, decode(grad_pred, data, body_model), ft, only_prior, "finetune", vposer=vposer)
    terms_grad = torch.autograd.grad(prior_total, rotmat)[0]
    assert torch.count_nonzero(terms_grad[0]) == 0 and torch.count_nonzero(terms_grad[1, 1:]) > 0

    with pytest.raises(ValueError, match="mode"):
        compute_losses(pred, decoded, data, weights, "train")
    with pytest.raises(TypeError, match="FinetuneLossWeights"):  # pretrain's weights carry no prior terms
        compute_losses(pred, decoded, ft, LossWeights(), "finetune")
    with pytest.raises(ValueError, match="reprojection"):
        compute_losses(pred, decoded, data, weights, "pretrain", "crop-ish")


def test_overfit_one_batch(body_model):
    """A few Adam steps on one fixed batch with known targets reduce the loss clearly."""
    data, _ = _supervised_batch(body_model)
    data["img"] = torch.randn(2, 3, CROP, CROP, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    net = CliffNet(NetworkConfig(), CROP).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    weights = LossWeights()

    def evaluate() -> float:
        """Training-mode loss (batch-statistics BatchNorm) with the same dropout masks each time."""
        torch.manual_seed(1)
        with torch.no_grad():
            pred = net(data["img"], data["bbox_info"])
            return compute_losses(pred, decode(pred, data, body_model), data, weights, "pretrain")[0].item()

    before = evaluate()
    for _ in range(STEPS):
        pred = net(data["img"], data["bbox_info"])
        loss, _ = compute_losses(pred, decode(pred, data, body_model), data, weights, "pretrain")
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert after < 0.2 * before, (before, after)  # measured: 0.371 -> 0.031



def test_decode_under_bf16_autocast_is_float32(body_model):
    data = _geometry(2)
    pred = _known_prediction(2)
    reference = decode(pred, data, body_model)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = decode(pred, data, body_model)
    assert all(v.dtype == torch.float32 for v in out.values())
    assert torch.allclose(out["keypoints_2d"], reference["keypoints_2d"], atol=1e-3)


def test_camera_scale_term_is_zero_for_plausible_cameras_and_pushes_collapsed_ones_back():
    from annotator.model.losses import MIN_CAMERA_SCALE, camera_scale_loss

    ok = torch.tensor([[0.9, 0.0, 0.1], [MIN_CAMERA_SCALE + 0.01, 0.2, 0.0]])
    assert float(camera_scale_loss(ok)) == 0.0
    dead = torch.tensor([[-9.4, 2.4, -5.3]], requires_grad=True)  # measured in a collapsed pretrain
    loss = camera_scale_loss(dead)
    loss.backward()
    assert float(loss) > 9 and float(dead.grad[0, 0]) < 0  # gradient descent raises s


def test_aux_mode_is_neuralannots_l_ax_l1_joints_and_a_per_parameter_l2(body_model):
    from annotator.config import AuxLossWeights

    data, truth = _supervised_batch(body_model)
    aux = {k: v for k, v in data.items() if not k.startswith("smpl_") and k != "has_smpl"}  # a 3D-joints-only set
    pred = _known_prediction(2, seed=7)
    decoded = decode(pred, aux, body_model)
    weights = AuxLossWeights(keypoints_2d=2.0, joints_3d=3.0, pose_l2=0.1, betas_l2=0.01)
    total, terms = compute_losses(pred, decoded, aux, weights, "aux")
    assert set(terms) == {"keypoints_2d", "camera_scale", "joints_3d", "pose_l2", "betas_l2", "total"}
    pr = decoded["keypoints_3d"] - decoded["keypoints_3d"][:, COCO17_HIPS].mean(1, keepdim=True)
    gt = aux["joints_3d"][..., :3] - aux["joints_3d"][:, COCO17_HIPS, :3].mean(1, keepdim=True)
    assert float(terms["joints_3d"]) == pytest.approx(float((pr - gt).abs().mean()), rel=1e-5)  # L1, not squared
    assert float(terms["pose_l2"]) == pytest.approx(float(decoded["body_pose"].square().sum(1).mean()), rel=1e-5)
    assert float(terms["betas_l2"]) == pytest.approx(float(pred["betas"].square().sum(1).mean()), rel=1e-5)
    expected = 2.0 * terms["keypoints_2d"] + 3.0 * terms["joints_3d"] + 0.1 * terms["pose_l2"] + 0.01 * terms["betas_l2"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    _, at_truth = compute_losses(truth, decode(truth, aux, body_model), aux, weights, "aux")
    assert float(at_truth["joints_3d"]) < 1e-5 and float(at_truth["pose_l2"]) > 0  # the regulariser is not a data term
    with pytest.raises(TypeError, match="AuxLossWeights"):
        compute_losses(pred, decoded, aux, LossWeights(), "aux")
