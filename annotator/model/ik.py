"""The IK network: one person's root-relative 3D joints -> SMPL rotations and shape.

GIK-Net of *Best of both worlds* (``../shared/papers/best_of_both_worlds.txt``): an MLP with
residual blocks, batch norm and ReLU that maps 3D joints to SMPL ``theta`` (here in the
continuous 6D representation, :func:`annotator.geometry.rotations.rot6d_to_matrix`) and
``beta``. It is the image-free way to give an aux set that has only 3D joints (MPI-INF-3DHP,
Human3.6M without its MoSh fits) SMPL parameters; it is trained on poses alone
(:func:`annotator.fitting.ik.train_ik`).

Inputs (:func:`ik_inputs`): the joints of one convention, minus the centre of the
convention's root joints (``JointConvention.root``), in metres, zero where a joint is
missing, plus the per-joint presence flags. The root rotation is predicted in the joints'
own frame (camera or world: whatever frame the file's joints are in).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from annotator.geometry.rotations import rot6d_to_matrix

NUM_ROTATIONS = 24
"""Root + the 23 body joints of SMPL."""
HIDDEN = 1024
"""Width of the residual blocks."""
BLOCKS = 2
"""Residual blocks (each: two Linear-BatchNorm-ReLU layers and a skip), as GIK-Net."""


def ik_inputs(joints: Tensor, present: Tensor, root: list[int]) -> Tensor:
    """``(B, K, 3)`` joints (metres) and ``(B, K)`` presence -> ``(B, 4K)`` features:
    root-relative joints (zero where missing) and the presence flags. The root is the mean
    of the present ``root`` joints (all joints' mean where none of them is present)."""
    present = present.to(joints.dtype)
    r = present[:, root]
    root_mean = (joints[:, root] * r[..., None]).sum(1) / r.sum(1, keepdim=True).clamp_min(1)
    all_mean = (joints * present[..., None]).sum(1) / present.sum(1, keepdim=True).clamp_min(1)
    centre = torch.where(r.sum(1, keepdim=True) > 0, root_mean, all_mean)
    rel = (joints - centre[:, None]) * present[..., None]
    return torch.cat([rel.flatten(1), present], dim=1)


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(),
                                    nn.Linear(width, width), nn.BatchNorm1d(width))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.layers(x))


class IKNet(nn.Module):
    """``(B, K, 3)`` joints + ``(B, K)`` presence -> ``{"rotmat": (B, 24, 3, 3), "betas": (B, num_betas)}``.
    ``root``: the convention's root joint indices (for :func:`ik_inputs`)."""

    def __init__(self, num_joints: int, root: list[int], num_betas: int = 10):
        super().__init__()
        self.num_joints, self.num_betas = int(num_joints), int(num_betas)
        self.register_buffer("root", torch.as_tensor(list(root), dtype=torch.long), persistent=True)
        self.stem = nn.Sequential(nn.Linear(4 * self.num_joints, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU())
        self.blocks = nn.Sequential(*[_Block(HIDDEN) for _ in range(BLOCKS)])
        self.head = nn.Linear(HIDDEN, NUM_ROTATIONS * 6 + self.num_betas)

    @staticmethod
    def shape_of(state: dict[str, Tensor]) -> tuple[int, list[int], int]:
        """``(num_joints, root, num_betas)`` of a saved IK network's state dict."""
        return (state["stem.0.weight"].shape[1] // 4, state["root"].tolist(),
                state["head.weight"].shape[0] - NUM_ROTATIONS * 6)

    def forward(self, joints: Tensor, present: Tensor) -> dict[str, Tensor]:
        if joints.ndim != 3 or joints.shape[1:] != (self.num_joints, 3):
            raise ValueError(f"IKNet: joints must be (B, {self.num_joints}, 3), got {tuple(joints.shape)}")
        with torch.autocast(device_type=joints.device.type, enabled=False):
            x = ik_inputs(joints.float(), present, self.root.tolist())
            out = self.head(self.blocks(self.stem(x)))
        rot = rot6d_to_matrix(out[:, :NUM_ROTATIONS * 6].reshape(-1, NUM_ROTATIONS, 6))
        return {"rotmat": rot, "betas": out[:, NUM_ROTATIONS * 6:]}
