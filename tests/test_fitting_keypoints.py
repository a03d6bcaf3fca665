"""The mesh-free keypoint path used by the fits equals BodyModel.forward (values and gradients)."""
from __future__ import annotations

import pytest
import torch

from annotator.body.joints import CONVENTIONS, select_keypoints
from annotator.fitting.keypoints import convention_keypoints


def _params(b: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return dict(
        global_orient=torch.randn(b, 3, generator=g),
        body_pose=0.4 * torch.randn(b, 69, generator=g),
        betas=torch.randn(b, 10, generator=g),
        transl=torch.randn(b, 3, generator=g) + torch.tensor([0.0, 0.0, 5.0]),
    )


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_keypoints_equal_body_forward(body_model, convention):
    p = _params(6, seed=0)
    out = body_model(**p)
    kps, joints = convention_keypoints(body_model, convention)(**p)
    expected = select_keypoints(out.keypoints, body_model.keypoint_names, convention)
    assert kps.shape == expected.shape
    assert (kps - expected).abs().max() < 2e-5  # metres; measured 4.3e-6 (float32 summation order)
    assert (joints - out.joints).abs().max() < 2e-6


def test_gradients_equal_body_forward(body_model):
    p = {k: v.requires_grad_(True) for k, v in _params(3, seed=1).items()}
    weights = torch.randn(3, 17, 3, generator=torch.Generator().manual_seed(2))
    fast = (convention_keypoints(body_model, "coco17")(**p)[0] * weights).sum()
    slow = (select_keypoints(body_model(**p).keypoints, body_model.keypoint_names, "coco17") * weights).sum()
    g_fast = torch.autograd.grad(fast, list(p.values()))
    g_slow = torch.autograd.grad(slow, list(p.values()))
    for name, a, b in zip(p, g_fast, g_slow):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), name


def test_built_once_per_body_convention_device_dtype(body_model):
    a = convention_keypoints(body_model, "coco17")
    assert convention_keypoints(body_model, "coco17") is a
    assert convention_keypoints(body_model, "mpii16") is not a
    d = convention_keypoints(body_model, "coco17", dtype=torch.float64)
    kps64, _ = d(**{k: v.double() for k, v in _params(2, seed=3).items()})
    kps32, _ = a(**_params(2, seed=3))
    assert kps64.dtype == torch.float64 and torch.allclose(kps64.float(), kps32, atol=2e-5)
