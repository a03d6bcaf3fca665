"""The 2D-keypoint lifter: one person's 2D keypoints + camera -> SMPL rotations (root + body).

Why: on a CPU budget an image network learns the 2D-to-3D mapping of human poses slowly
(the bench measured about 750 steps to reach a skill of 0.19 on its own training domain),
while the same mapping is learnt from poses alone, without images, in a few thousand cheap
steps: poses of a mocap set (the synthetic world's AMASS), seen by random cameras. This is
the lifter of SPIN (supplementary: "a 2D-keypoint lifter to start SMPLify from") and the
IK network of *Best of both worlds*, here regressing SMPL rotations directly.

The annotator uses it as the starting point of the CLIFF regressor's iterative error
feedback (``lifter.enabled``, :class:`annotator.model.cliff.CliffNet`): instead of the mean
pose, the regressor refines the lifter's pose with what the image shows. The lifter's
weights are frozen inside the network; they travel in its checkpoints.

Inputs (:func:`lifter_inputs`), all independent of the dataset's box convention:

* keypoints in normalised camera coordinates ``(u - p) / f`` (``f`` the focal, ``p`` the
  principal point), centred on the middle of the labelled keypoints' extent and divided by
  that extent (longest side), zero for unlabelled keypoints;
* the labelled flags (confidence > 0);
* the extent's centre ``(x, y)`` and ``log`` side in normalised camera coordinates, the
  perspective information (as CLIFF's bbox information) that tells where in the field of
  view the person is, so the root rotation can be predicted in the camera frame.

Output: ``(B, 24, 3, 3)`` rotation matrices (root first, in the camera frame), regressed in
the continuous 6D representation (:func:`annotator.geometry.rotations.rot6d_to_matrix`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from annotator.geometry.rotations import matrix_to_rot6d, rot6d_to_matrix

NUM_ROTATIONS = 24
"""Root + the 23 body joints of SMPL."""
HIDDEN = 1024
"""Width of the three hidden layers (a Martinez et al. 2017-sized lifting MLP)."""
LAYERS = 3
DROPOUT = 0.1
EXTRA_INPUTS = 3
"""Extent centre (x, y) and log side."""
MIN_EXTENT = 1e-6
"""Smallest keypoint extent (normalised camera units) divided by; one labelled keypoint has none."""


def lifter_inputs(keypoints_2d: Tensor, focal: Tensor, principal_point: Tensor) -> Tensor:
    """``(B, K, 3)`` pixel keypoints with confidence, focal ``(B,)``, principal point ``(B, 2)``
    -> ``(B, 3K + 3)`` lifter features (see the module docstring). Rows without any labelled
    keypoint get all-zero keypoint features."""
    xy = (keypoints_2d[..., :2].float() - principal_point[:, None].float()) / focal.float()[:, None, None]
    seen = keypoints_2d[..., 2] > 0
    any_seen = seen.any(dim=1, keepdim=True)
    big = torch.finfo(xy.dtype).max
    lo = torch.where(seen[..., None], xy, torch.full_like(xy, big)).amin(dim=1)
    hi = torch.where(seen[..., None], xy, torch.full_like(xy, -big)).amax(dim=1)
    lo = torch.where(any_seen, lo, torch.zeros_like(lo))
    hi = torch.where(any_seen, hi, torch.zeros_like(hi))
    centre = (lo + hi) / 2
    side = (hi - lo).amax(dim=1, keepdim=True).clamp_min(MIN_EXTENT)
    rel = (xy - centre[:, None]) / side[:, None] * seen[..., None]
    return torch.cat([rel.flatten(1), seen.float(), centre, side.log()], dim=1)


class Lifter(nn.Module):
    """MLP ``lifter_inputs -> (B, 24, 3, 3)`` rotations. ``num_keypoints``: K of the convention."""

    def __init__(self, num_keypoints: int):
        super().__init__()
        self.num_keypoints = int(num_keypoints)
        layers: list[nn.Module] = []
        width = 3 * self.num_keypoints + EXTRA_INPUTS
        for _ in range(LAYERS):
            layers += [nn.Linear(width, HIDDEN), nn.ReLU(), nn.Dropout(DROPOUT)]
            width = HIDDEN
        layers.append(nn.Linear(width, NUM_ROTATIONS * 6))
        self.net = nn.Sequential(*layers)

    @staticmethod
    def keypoints_in(state: dict[str, Tensor], prefix: str = "") -> int:
        """K of a saved lifter, from the width of its first layer."""
        return (state[f"{prefix}net.0.weight"].shape[1] - EXTRA_INPUTS) // 3

    def forward(self, keypoints_2d: Tensor, focal: Tensor, principal_point: Tensor) -> Tensor:
        if keypoints_2d.ndim != 3 or keypoints_2d.shape[1:] != (self.num_keypoints, 3):
            raise ValueError(f"Lifter: keypoints_2d must be (B, {self.num_keypoints}, 3), got {tuple(keypoints_2d.shape)}")
        feats = lifter_inputs(keypoints_2d, focal, principal_point).to(self.net[0].weight.dtype)
        with torch.autocast(device_type=feats.device.type, enabled=False):
            out = self.net(feats.float())
            return rot6d_to_matrix(out.reshape(-1, NUM_ROTATIONS, 6))

    def pose_6d(self, keypoints_2d: Tensor, focal: Tensor, principal_point: Tensor) -> Tensor:
        """``(B, 144)`` 6D rotations (CliffNet's ``pose_6d`` layout) of the lifted pose."""
        rot = self.forward(keypoints_2d, focal, principal_point)
        return matrix_to_rot6d(rot).reshape(rot.shape[0], NUM_ROTATIONS * 6)
