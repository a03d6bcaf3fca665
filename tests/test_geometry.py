"""Geometry: rotations, CLIFF cameras (Eq. 5 / Eq. 7) and crop affines, with numbers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from annotator.geometry import (
    apply_affine,
    axis_angle_to_matrix,
    axis_angle_to_rot6d,
    bbox_info,
    bbox_to_center_size,
    cam_crop_to_full,
    cam_full_to_crop,
    crop_affine,
    crop_grid,
    crop_intrinsics,
    default_focal,
    geodesic_distance,
    invert_affine,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    perspective_projection,
    rot6d_to_axis_angle,
    rot6d_to_matrix,
    weak_perspective_to_translation,
)

G = torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _float64():
    """Exact identities are checked in float64; the default dtype is restored afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _rand_aa(*shape, max_angle=math.pi * 0.999):
    axis = F.normalize(torch.randn(*shape, 3, generator=G), dim=-1)
    return axis * torch.rand(*shape, 1, generator=G) * max_angle


# ---------------------------------------------------------------- rotations
def test_axis_angle_round_trip_including_zero_and_near_pi():
    aa = _rand_aa(4, 5)
    tiny = F.normalize(torch.randn(3, 3, generator=G), dim=-1) * torch.tensor([[0.0], [1e-9], [1e-5]])
    near_pi = F.normalize(torch.randn(3, 3, generator=G), dim=-1) * torch.tensor([[math.pi - 1e-3], [math.pi - 1e-6], [3.0]])
    for x in (aa, tiny, near_pi):
        back = matrix_to_axis_angle(axis_angle_to_matrix(x))
        assert back.shape == x.shape
        assert torch.allclose(back, x, atol=1e-6), (back - x).abs().max()
    # x-axis rotation by 90 deg: hand-checked matrix
    r = axis_angle_to_matrix(torch.tensor([math.pi / 2, 0.0, 0.0]))
    assert torch.allclose(r, torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]), atol=1e-12)


def test_axis_angle_at_zero_has_finite_gradient():
    x = torch.zeros(2, 3, requires_grad=True)
    axis_angle_to_matrix(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_rot6d_layout_and_round_trips():
    r = axis_angle_to_matrix(_rand_aa(7, 2))
    six = matrix_to_rot6d(r)
    assert six.shape == (7, 2, 6)
    # first two columns, row-major: [R00, R01, R10, R11, R20, R21]
    assert torch.equal(six[..., 0::2], r[..., :, 0]) and torch.equal(six[..., 1::2], r[..., :, 1])
    assert torch.allclose(rot6d_to_matrix(six), r, atol=1e-12)
    assert torch.allclose(matrix_to_rot6d(rot6d_to_matrix(six)), six, atol=1e-12)
    # arbitrary (non-orthonormal) 6D -> a proper rotation, idempotent afterwards
    m = rot6d_to_matrix(torch.randn(10, 6, generator=G))
    assert torch.allclose(m @ m.transpose(-1, -2), torch.eye(3).expand(10, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(m), torch.ones(10), atol=1e-12)
    aa = _rand_aa(6)
    assert torch.allclose(rot6d_to_axis_angle(axis_angle_to_rot6d(aa)), aa, atol=1e-6)


def test_geodesic_distance_equals_relative_angle():
    aa = _rand_aa(8, max_angle=3.0)
    r = axis_angle_to_matrix(aa)
    eye = torch.eye(3).expand(8, 3, 3)
    assert torch.allclose(geodesic_distance(eye, r), aa.norm(dim=-1), atol=1e-6)


# ---------------------------------------------------------------- cameras
def test_default_focal_and_projection_hand_example():
    assert default_focal(640, 480).item() == pytest.approx(800.0)
    pts = torch.tensor([[[0.0, 0.0, 5.0], [1.0, -0.5, 4.0]]])
    uv = perspective_projection(pts, torch.tensor([800.0]), torch.tensor([[320.0, 240.0]]))
    assert torch.allclose(uv, torch.tensor([[[320.0, 240.0], [520.0, 140.0]]]))
    # translation/rotation applied as R x + t; (B, 2) focal
    rot = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]]))  # x -> y
    uv = perspective_projection(torch.tensor([[[1.0, 0.0, 0.0]]]), torch.tensor([[100.0, 200.0]]),
                                torch.tensor([[10.0, 20.0]]), torch.tensor([[0.0, 0.0, 2.0]]), rot)
    assert torch.allclose(uv, torch.tensor([[[10.0, 120.0]]]))
    # a point at z = 0 stays finite
    assert torch.isfinite(perspective_projection(torch.zeros(1, 1, 3), torch.tensor([1.0]), torch.zeros(1, 2))).all()


def test_bbox_info_hand_computed():
    # 1000x800 image, box centre (700, 300), side 200, focal 1280.6248 = sqrt(1000^2+800^2)
    f = default_focal(1000.0, 800.0).reshape(1)
    info = bbox_info(torch.tensor([[700.0, 300.0]]), torch.tensor([200.0]), f, torch.tensor([[1000.0, 800.0]]))
    expected = torch.tensor([[200.0, -100.0, 200.0]]) / math.sqrt(1000.0**2 + 800.0**2)
    assert torch.allclose(info, expected)
    assert info[0, 0].item() == pytest.approx(0.156173761888606, rel=1e-12)


def _crop_case(n=6):
    image_size = torch.tensor([[1280.0, 720.0]]).expand(n, 2)
    focal = default_focal(image_size[:, 0], image_size[:, 1])
    center = torch.stack([torch.rand(n, generator=G) * 1280, torch.rand(n, generator=G) * 720], -1)
    size = 80 + torch.rand(n, generator=G) * 300
    crop_cam = torch.stack([0.6 + 0.4 * torch.rand(n, generator=G), 0.2 * torch.randn(n, generator=G),
                            0.2 * torch.randn(n, generator=G)], -1)
    return crop_cam, center, size, image_size, focal


def _crop_camera_full_px(points, crop_cam, center, size):
    """Weak perspective in the crop ([-1, 1] normalised), mapped back by the inverse crop affine."""
    res = 224.0
    norm = crop_cam[:, None, :1] * (points[..., :2] + crop_cam[:, None, 1:])
    crop_px = (norm + 1.0) * res / 2.0
    return apply_affine(crop_px, invert_affine(crop_affine(center, size, res)))


def test_cam_crop_to_full_reprojects_like_the_crop_camera():
    crop_cam, center, size, image_size, focal = _crop_case()
    transl = cam_crop_to_full(crop_cam, center, size, image_size, focal)
    # exact on the plane z = t_z (body depth 0)
    plane = torch.cat([torch.randn(6, 30, 2, generator=G) * 0.8, torch.zeros(6, 30, 1)], -1)
    full = perspective_projection(plane, focal, image_size / 2, transl)
    assert (full - _crop_camera_full_px(plane, crop_cam, center, size)).abs().max() < 1e-9
    # thin-in-depth, far body: the weak-perspective approximation is sub-pixel
    body = torch.cat([torch.randn(6, 30, 2, generator=G) * 0.5, (torch.rand(6, 30, 1, generator=G) - 0.5) * 0.02], -1)  # +-1 cm depth
    far_cam = crop_cam.clone()
    far_cam[:, 0] = 0.2  # small scale -> far away (t_z = 2 f / (b s) > 25 m here)
    transl = cam_crop_to_full(far_cam, center, size, image_size, focal)
    assert (transl[:, 2] > 25).all()
    full = perspective_projection(body, focal, image_size / 2, transl)
    err = (full - _crop_camera_full_px(body, far_cam, center, size)).norm(dim=-1)
    assert err.max() < 0.5, err.max()
    # 2 m segment at the body's depth spans b * s px
    seg = torch.tensor([[[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]).expand(6, 2, 3)
    uv = perspective_projection(seg, focal, image_size / 2, transl)
    assert torch.allclose(uv[:, 1, 0] - uv[:, 0, 0], size * far_cam[:, 0])


def test_cam_full_to_crop_inverts_crop_to_full():
    crop_cam, center, size, image_size, focal = _crop_case()
    transl = cam_crop_to_full(crop_cam, center, size, image_size, focal)
    assert torch.allclose(cam_full_to_crop(transl, center, size, image_size, focal), crop_cam, atol=1e-12)
    pp = torch.tensor([[600.0, 380.0]]).expand(6, 2)
    transl = cam_crop_to_full(crop_cam, center, size, image_size, focal, principal_point=pp)
    back = cam_full_to_crop(transl, center, size, image_size, focal, principal_point=pp)
    assert torch.allclose(back, crop_cam, atol=1e-12)


def test_weak_perspective_translation_matches_crop_intrinsics():
    crop_cam = torch.tensor([[0.9, 0.05, -0.1], [1.1, -0.2, 0.1]])
    res, fc = 224.0, 5000.0
    transl = weak_perspective_to_translation(crop_cam, res, fc)
    assert torch.allclose(transl[:, 2], 2 * fc / (res * crop_cam[:, 0]))
    k = crop_intrinsics(2, res, fc)
    assert torch.allclose(k[0], torch.tensor([[fc, 0, 112.0], [0, fc, 112.0], [0, 0, 1]]))
    pts = torch.cat([torch.randn(2, 10, 2, generator=G) * 0.5, torch.zeros(2, 10, 1)], -1)
    uv = perspective_projection(pts, k[:, 0, 0], k[:, :2, 2], transl)
    weak = (crop_cam[:, None, :1] * (pts[..., :2] + crop_cam[:, None, 1:]) + 1) * res / 2
    assert torch.allclose(uv, weak, atol=1e-9)


# ---------------------------------------------------------------- crop
def test_bbox_to_center_size_and_affine_round_trip():
    center, size = bbox_to_center_size(torch.tensor([[100.0, 50.0, 40.0, 120.0]]), 1.2)
    assert torch.allclose(center, torch.tensor([[120.0, 110.0]])) and torch.allclose(size, torch.tensor([144.0]))
    a = crop_affine(center, size, 224)
    corners = torch.tensor([[[48.0, 38.0], [192.0, 182.0], [120.0, 110.0]]])
    assert torch.allclose(apply_affine(corners, a), torch.tensor([[[0.0, 0.0], [224.0, 224.0], [112.0, 112.0]]]))
    pts = torch.rand(1, 20, 2, generator=G) * 500
    assert torch.allclose(apply_affine(apply_affine(pts, a), invert_affine(a)), pts, atol=1e-10)


def test_crop_grid_samples_the_expected_pixels():
    img = torch.arange(3 * 40 * 50, dtype=torch.float64).reshape(1, 3, 40, 50)
    # box centred at (25, 18) of side 16 at res 16: exactly pixels x 17..32, y 10..25
    grid = crop_grid(torch.tensor([[25.0, 18.0]]), torch.tensor([16.0]), 16, torch.tensor([[50.0, 40.0]]))
    crop = F.grid_sample(img, grid, align_corners=False)
    assert torch.allclose(crop, img[:, :, 10:26, 17:33], atol=1e-9)
    # half resolution: each crop pixel is the mean of a 2x2 block (bilinear at the block centre)
    grid = crop_grid(torch.tensor([[25.0, 18.0]]), torch.tensor([16.0]), 8, torch.tensor([[50.0, 40.0]]))
    crop = F.grid_sample(img, grid, align_corners=False)
    assert torch.allclose(crop, F.avg_pool2d(img[:, :, 10:26, 17:33], 2), atol=1e-9)
