"""Augmentation on cached context crops: exact in the full camera frame, and the same pixels
as augmenting a freshly decoded crop (within the interpolation tolerance)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from annotator.body.joints import select_keypoints
from annotator.config import AugmentConfig, CropConfig
from annotator.data.augment import AugmentParams, augment_batch
from annotator.data.images import load_crops, normalize_images
from annotator.geometry.cameras import perspective_projection
from annotator.geometry.rotations import axis_angle_to_matrix

W, H = 320, 240
#: Mean absolute difference (0-255 grey levels) allowed between an augmented cached crop and
#: the crop decoded from the augmented image: two bilinear resamplings instead of one.
TOLERANCE = 3.0


def _image(path) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    img = np.stack([127 + 100 * np.sin(xx / 17.0), 127 + 100 * np.cos(yy / 13.0),
                    127 + 100 * np.sin((xx + yy) / 23.0)], -1).astype(np.uint8)
    Image.fromarray(img).save(path)
    return img


def _params(flip: bool, theta: float, scale: float, shift=(0.0, 0.0)) -> AugmentParams:
    return AugmentParams(flip=torch.tensor([flip]), theta=torch.tensor([theta]), scale=torch.tensor([scale]),
                         shift=torch.tensor([shift]))


@pytest.mark.parametrize("flip,theta,scale,shift", [(False, 0.0, 1.0, (0, 0)), (True, 0.0, 1.0, (0, 0)),
                                                     (False, 0.3, 1.0, (0, 0)), (True, -0.2, 0.9, (0.05, -0.04))])
def test_augmented_cached_crop_equals_augmenting_a_fresh_decode(tmp_path, flip, theta, scale, shift):
    src = tmp_path / "img.png"
    img = _image(src)
    crop = CropConfig(size=48, bbox_scale=1.2, cache_context=1.25)
    bbox = np.array([[130.0, 70.0, 50.0, 90.0]])
    pp = np.array([W / 2.0, H / 2.0])
    ctx = load_crops([str(src)], bbox, round(crop.size * crop.cache_context), crop.bbox_scale * crop.cache_context)
    batch = {"img": normalize_images(ctx.images), "affine": torch.from_numpy(ctx.affine),
             "center": torch.from_numpy(ctx.center), "box_size": torch.from_numpy(ctx.box_size) / crop.cache_context,
             "principal_point": torch.from_numpy(pp[None].astype(np.float32)), "focal": torch.tensor([300.0]),
             "image_size": torch.tensor([[W, H]], dtype=torch.float32)}
    out = augment_batch(batch, _params(flip, theta, scale, shift), crop.size)
    # the same augmentation done on the full image: mirror / roll about the principal point
    pil = Image.fromarray(img)
    if flip:
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # principal point at the centre
    if theta:
        pil = pil.rotate(-np.degrees(theta), resample=Image.Resampling.BILINEAR, center=tuple(pp))
    aug_path = tmp_path / "aug.png"
    pil.save(aug_path)
    c, b = out["center"][0].numpy(), float(out["box_size"][0])
    side = b / crop.bbox_scale
    fresh = load_crops([str(aug_path)], np.array([[c[0] - side / 2, c[1] - side / 2, side, side]]), crop.size,
                       crop.bbox_scale)
    from annotator.data.images import IMAGENET_MEAN, IMAGENET_STD

    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    ours = ((out["img"][0] * std + mean) * 255).clamp(0, 255)
    diff = (ours - torch.from_numpy(fresh.images[0]).float()).abs()
    inner = diff[:, 4:-4, 4:-4]  # the rotated image's own border padding differs at the crop's edge
    assert float(inner.mean()) < TOLERANCE, float(inner.mean())


def _lab_batch(body, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    go = torch.randn(n, 3, generator=g) * 0.5 + torch.tensor([np.pi, 0, 0])
    bp = torch.randn(n, 69, generator=g) * 0.2
    betas = torch.randn(n, 10, generator=g) * 0.5
    transl = torch.tensor([[0.1, 0.2, 4.0]]).repeat(n, 1) + torch.randn(n, 3, generator=g) * 0.2
    o = body(global_orient=go, body_pose=bp, betas=betas, transl=transl)
    j = select_keypoints(o.keypoints, body.keypoint_names, "coco17")
    focal, pp = torch.full((n,), 500.0), torch.tensor([[160.0, 120.0]]).repeat(n, 1)
    kp = perspective_projection(j, focal, pp)
    return {"img": torch.zeros(n, 3, 60, 60), "affine": torch.tensor([[[0.5, 0, 0], [0, 0.5, 0]]]).repeat(n, 1, 1),
            "center": kp.mean(1), "box_size": torch.full((n,), 120.0), "principal_point": pp, "focal": focal,
            "image_size": torch.tensor([[320.0, 240.0]]).repeat(n, 1),
            "keypoints_2d": torch.cat([kp, torch.ones(n, 17, 1)], -1), "joints_3d": torch.cat([j, torch.ones(n, 17, 1)], -1),
            "smpl_global_orient": go, "smpl_body_pose": bp, "smpl_betas": betas, "smpl_transl": transl,
            "prior_global_orient": go.clone(), "prior_body_pose": bp.clone(), "prior_betas": betas.clone()}


def test_augmented_targets_stay_consistent(body_model):
    """After any flip/roll/jitter: 2D = projection of 3D, and the SMPL parameters pose to the
    same root-aligned 3D joints (a mirrored body within the open model's asymmetry)."""
    b = _lab_batch(body_model)
    p = AugmentParams.sample(6, AugmentConfig(enabled=True, flip_prob=0.5, rotation_prob=1.0), torch.Generator().manual_seed(1))
    p = AugmentParams(flip=torch.tensor([True, False, True, False, True, False]), theta=p.theta, scale=p.scale, shift=p.shift)
    a = augment_batch(b, p, 48)
    kp = perspective_projection(a["joints_3d"][..., :3], a["focal"], a["principal_point"])
    assert torch.allclose(kp, a["keypoints_2d"][..., :2], atol=1e-3)
    o = body_model(global_orient=a["smpl_global_orient"], body_pose=a["smpl_body_pose"], betas=a["smpl_betas"])
    k3 = select_keypoints(o.keypoints, body_model.keypoint_names, "coco17")
    ra = lambda x: x - x[:, 11:13].mean(1, keepdim=True)  # noqa: E731
    err = (ra(k3) - ra(a["joints_3d"][..., :3])).norm(dim=-1)
    assert float(err.max()) < 0.005  # 5 mm: the open model is not exactly left/right symmetric
    assert torch.allclose(a["prior_global_orient"], a["smpl_global_orient"])
    # a roll turns the root about the camera axis by exactly theta
    rolled = ~p.flip
    r0, r1 = axis_angle_to_matrix(b["smpl_global_orient"][rolled]), axis_angle_to_matrix(a["smpl_global_orient"][rolled])
    angle = torch.atan2((r1 @ r0.transpose(-1, -2))[:, 1, 0], (r1 @ r0.transpose(-1, -2))[:, 0, 0])
    assert torch.allclose(angle, p.theta[rolled], atol=1e-4)


def test_identity_keeps_targets_and_sampling_is_seeded(body_model):
    b = _lab_batch(body_model)
    a = augment_batch(b, AugmentParams.identity(6), 48)
    for k in ("keypoints_2d", "joints_3d", "smpl_body_pose", "center", "box_size"):
        assert torch.allclose(a[k], b[k], atol=1e-5), k
    assert torch.allclose(axis_angle_to_matrix(a["smpl_global_orient"]), axis_angle_to_matrix(b["smpl_global_orient"]),
                          atol=1e-5)  # the same rotation (its axis-angle may take the other branch)
    cfg = AugmentConfig(enabled=True)
    p1 = AugmentParams.sample(64, cfg, torch.Generator().manual_seed(3))
    p2 = AugmentParams.sample(64, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(p1.theta, p2.theta) and torch.equal(p1.flip, p2.flip)
    assert 0.3 < p1.flip.float().mean() < 0.7
    assert float(p1.theta.abs().max()) <= np.radians(cfg.rotation_deg) + 1e-6
