"""Metrics: hand examples, PA-MPJPE against an independent numpy Umeyama, masks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from annotator.evaluation.metrics import (
    AUC_THRESHOLDS_MM,
    auc_3d,
    keypoint_error_2d,
    mpii_head_size,
    mpjpe,
    pa_mpjpe,
    pck_2d,
    pck_3d,
    per_axis_errors,
    pve,
    similarity_align,
    summarise,
)
from annotator.geometry import axis_angle_to_matrix

G = torch.Generator().manual_seed(1)


def _numpy_pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Independent reference: Umeyama (1991) on one sample, written from the paper."""
    mp, mg = pred.mean(0), gt.mean(0)
    x, y = pred - mp, gt - mg
    cov = y.T @ x / len(x)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1
    r = u @ s @ vt
    c = np.trace(np.diag(d) @ s) / (x**2).sum(1).mean()
    aligned = c * x @ r.T + mg
    return float(np.linalg.norm(aligned - gt, axis=1).mean())


def test_mpjpe_hand_example_with_root_and_mask():
    gt = torch.zeros(1, 3, 3)
    pred = torch.tensor([[[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]])
    assert mpjpe(pred, gt).item() == pytest.approx(7.0 / 3.0)
    assert mpjpe(pred, gt, mask=torch.tensor([True, True, False])).item() == pytest.approx(2.5)
    # root alignment removes a global shift; mid-hip root = mean of joints 1 and 2
    shifted = gt + torch.tensor([10.0, -5.0, 3.0])
    assert mpjpe(shifted, gt, root=0).item() == pytest.approx(0.0)
    assert mpjpe(shifted, gt, root=[1, 2]).item() == pytest.approx(0.0)
    assert mpjpe(shifted, gt).item() == pytest.approx(math.sqrt(134.0))


def test_pa_mpjpe_zero_for_similarity_copy():
    gt = torch.randn(8, 17, 3, generator=G, dtype=torch.float64)
    rot = axis_angle_to_matrix(torch.randn(8, 3, generator=G, dtype=torch.float64))
    scale = 0.5 + torch.rand(8, 1, 1, generator=G, dtype=torch.float64) * 2
    pred = scale * gt @ rot.transpose(1, 2) + torch.randn(8, 1, 3, generator=G, dtype=torch.float64)
    assert mpjpe(pred, gt).min() > 0.1
    assert pa_mpjpe(pred, gt).max().item() < 1e-10


def test_pa_mpjpe_matches_numpy_reference_on_random_data():
    pred = torch.randn(16, 14, 3, generator=G, dtype=torch.float64)
    gt = torch.randn(16, 14, 3, generator=G, dtype=torch.float64)
    ours = pa_mpjpe(pred, gt).numpy()
    ref = np.array([_numpy_pa_mpjpe(p, g) for p, g in zip(pred.numpy(), gt.numpy())])
    assert np.allclose(ours, ref, atol=1e-10)
    # random pairs include cases where the best orthogonal map is a reflection
    covs = [np.linalg.det(np.linalg.svd(g.T @ p)[0]) * np.linalg.det(np.linalg.svd(g.T @ p)[2])
            for p, g in zip(pred.numpy() - pred.numpy().mean(1, keepdims=True), gt.numpy())]
    assert min(covs) < 0


def test_similarity_align_is_reflection_safe():
    gt = torch.randn(4, 10, 3, generator=G, dtype=torch.float64)
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    aligned = similarity_align(mirrored, gt)
    # a mirror image cannot be reached by a rotation: error stays > 0 ...
    assert pa_mpjpe(mirrored, gt).min() > 0.05
    # ... and the fitted map is a proper rotation (det +1) times a positive scale
    centred = mirrored - mirrored.mean(1, keepdim=True)
    sol = torch.linalg.lstsq(centred, aligned - aligned.mean(1, keepdim=True)).solution
    assert (torch.linalg.det(sol) > 0).all()


def test_pa_mpjpe_mask_ignores_outliers():
    gt = torch.randn(2, 12, 3, generator=G, dtype=torch.float64)
    rot = axis_angle_to_matrix(torch.tensor([[0.3, -0.2, 0.9], [1.0, 0.5, 0.0]], dtype=torch.float64))
    pred = 1.3 * gt @ rot.transpose(1, 2) + 0.4
    pred[:, 3] += 5.0  # a wild joint
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[:, 3] = False
    assert pa_mpjpe(pred, gt, mask).max().item() < 1e-10
    assert pa_mpjpe(pred, gt).min().item() > 0.1


def test_pve_and_per_axis_errors():
    gt = torch.zeros(1, 4, 3)
    pred = torch.tensor([[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 7.0]]])
    assert pve(pred, gt).item() == pytest.approx((3 * math.sqrt(14) + math.sqrt(54)) / 4)
    assert pve(pred, gt, pred[:, 0], gt[:, 0]).item() == pytest.approx(1.0)  # only vertex 3 off by 4 in z
    axes = per_axis_errors(pred, gt, root=0)
    assert [axes[a].item() for a in "xyz"] == pytest.approx([0.0, 0.0, 1.0])
    axes = per_axis_errors(pred, gt)
    assert [axes[a].item() for a in "xyz"] == pytest.approx([1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="both"):
        pve(pred, gt, pred[:, 0])


def test_2d_error_pck_and_masks():
    gt = torch.zeros(2, 4, 2)
    pred = torch.tensor([[[3.0, 4.0], [0.0, 1.0], [0.0, 20.0], [100.0, 0.0]]]).repeat(2, 1, 1)
    vis = torch.tensor([[1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    err = keypoint_error_2d(pred, gt, vis)
    assert err[0].item() == pytest.approx(26.0 / 3.0) and math.isnan(err[1].item())
    assert keypoint_error_2d(pred, gt, vis, norm=torch.tensor([2.0, 1.0]))[0].item() == pytest.approx(13.0 / 3.0)
    box = torch.tensor([50.0, 50.0])
    assert pck_2d(pred, gt, box, alpha=0.1, mask=vis)[0].item() == pytest.approx(2.0 / 3.0)  # 5 px threshold
    assert pck_2d(pred, gt, box, alpha=0.1)[0].item() == pytest.approx(0.5)
    assert mpii_head_size(torch.tensor([[10.0, 10.0, 40.0, 50.0]])).item() == pytest.approx(30.0)  # 0.6 * 50
    assert summarise({"e": err}) == {"e": pytest.approx(26.0 / 3.0)}


def test_pck3d_and_auc_on_constructed_errors():
    # one sample, 4 joints with errors 0, 42, 122, 200 mm (off the 5 mm grid) along x (inputs in metres)
    gt = torch.zeros(1, 4, 3, dtype=torch.float64)
    pred = gt.clone()
    pred[0, :, 0] = torch.tensor([0.0, 0.042, 0.122, 0.200], dtype=torch.float64)
    assert pck_3d(pred, gt, mm_per_unit=1000.0).item() == pytest.approx(0.75)
    assert pck_3d(pred, gt, threshold_mm=100.0, mm_per_unit=1000.0).item() == pytest.approx(0.5)
    # AUC: thresholds 0..150 step 5 (31); joint hit counts: 31 + 22 (45..150) + 6 (125..150) + 0
    assert len(AUC_THRESHOLDS_MM) == 31
    assert auc_3d(pred, gt, mm_per_unit=1000.0).item() == pytest.approx((31 + 22 + 6) / (4 * 31))
    mask = torch.tensor([True, False, True, False])
    assert auc_3d(pred, gt, mask=mask, mm_per_unit=1000.0).item() == pytest.approx((31 + 6) / (2 * 31))
    assert pck_3d(pred * 1000.0, gt).item() == pytest.approx(0.75)  # mm inputs, default unit


def test_summarise_skips_nan():
    assert summarise({"a": torch.tensor([1.0, math.nan, 3.0]), "b": torch.tensor([2.0])}) == {"a": 2.0, "b": 2.0}
