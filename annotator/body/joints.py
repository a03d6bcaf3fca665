"""Joint conventions: the one place that says which joint is which.

Every convention is a :class:`JointConvention`: ordered ``joint_names``, ``flip_pairs``
(index pairs swapped by a horizontal flip, derived from ``left_*``/``right_*`` names),
``model_candidates`` (per joint, the body-model keypoint names to use, first present
wins), ``root`` (joint indices averaged for root alignment) and ``hips`` (left, right).

Body-model keypoints (``BodyModel.keypoint_names``)
---------------------------------------------------
* the 24 SMPL joints (:data:`SMPL_JOINT_NAMES`);
* surface landmarks (:data:`LANDMARK_NAMES`): nose, eyes, ears, the 6 foot points,
  head_top;
* open model only: regressed points ``coco_<name>`` for the 17 COCO names and the 6
  foot names, trained to sit where COCO annotators click (hips lower and wider than the
  SMPL hip joint centres, etc.). When present they are preferred for COCO/MPII limbs.

Conventions
-----------
``smpl24``  the SMPL kinematic joints in SMPL order; root = pelvis.

``coco17``  nose, left_eye, right_eye, left_ear, right_ear, left_shoulder,
            right_shoulder, left_elbow, right_elbow, left_wrist, right_wrist, left_hip,
            right_hip, left_knee, right_knee, left_ankle, right_ankle.
            Model: ``coco_<name>`` else the SMPL joint/landmark of the same name.
            Root = mid-hip (mean of left_hip, right_hip).

``coco23``  coco17 + left_big_toe, left_small_toe, left_heel, right_big_toe,
            right_small_toe, right_heel (COCO-WholeBody foot order). Model: as coco17;
            root = mid-hip.

``mpii16``  right_ankle, right_knee, right_hip, left_hip, left_knee, left_ankle, pelvis,
            thorax, upper_neck, head_top, right_wrist, right_elbow, right_shoulder,
            left_shoulder, left_elbow, left_wrist (MPII r_/l_ spelled right_/left_ so
            names are shared with COCO). Model: limbs as coco17 (MPII annotators click
            the same surface points); pelvis -> SMPL ``pelvis``; upper_neck -> SMPL
            ``neck`` (base of the neck); head_top -> landmark ``head_top``; thorax ->
            SMPL ``neck`` as well. MPII marks the thorax at shoulder height, ~5 cm below
            the upper neck (measured on the fixture images); on the open model in T-pose
            ``neck`` is 7 cm above the shoulders and ``spine3`` 12 cm below them, so
            ``neck`` is the closer single model point. Sharing it means a 2D fit pulls
            the model neck to between the two annotations, instead of dragging
            ``spine3`` 12 cm up the chest. Root = mid-hip.

``spin24``  SPIN's 24 ``part`` joints (:data:`SPIN24_NAMES`): the LSP 14 (MPII's upper_neck
            and head_top for LSP's neck and head top), pelvis, thorax, H36M spine,
            neck_nose (SPIN's "jaw"), head, then the COCO face points. Model: as mpii16 /
            h36m17 for the shared names, else coco17. Root = mid-hip. Used by the SPIN/CLIFF
            npz export (``part``, ``S``).

``h36m17``  pelvis, right_hip, right_knee, right_ankle, left_hip, left_knee,
            left_ankle, spine, thorax, neck_nose, head, left_shoulder, left_elbow,
            left_wrist, right_shoulder, right_elbow, right_wrist (Human3.6M 17-joint
            order). Human3.6M joints are skeleton joint centres like SMPL's, so limbs and
            pelvis map to the SMPL joints (not ``coco_*``). Approximations: spine ->
            ``spine2`` (mid-back, about halfway pelvis-thorax); thorax -> ``neck`` (base
            of the neck, ~7 cm above the shoulder line on the open model); neck_nose ->
            landmark ``nose``; head -> landmark ``head_top``. Root = pelvis.

Caveat for :func:`convert`: it copies joints by **name**; names mean the same body
part but not always the same point (a COCO hip is a surface point, an H36M hip a joint
centre a few cm away). Use it for bookkeeping (visibility, layout), not to claim that
a COCO detection is an H36M ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
"""The 24 SMPL joints, in the SMPL file's order (every body model, open or SMPL, has them)."""
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
"""SMPL kinematic tree (parent index of each joint of :data:`SMPL_JOINT_NAMES`)."""
NUM_JOINTS = len(SMPL_JOINT_NAMES)
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9
"""Pose-corrective blend shapes of the SMPL format: 9 rotation-matrix entries per non-root joint."""
LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_big_toe", "left_small_toe",
    "left_heel", "right_big_toe", "right_small_toe", "right_heel", "head_top",
)
"""Surface landmarks every body model provides (nose, eyes, ears, 6 foot points, head_top)."""
FOOT_NAMES = ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO23_NAMES = COCO17_NAMES + FOOT_NAMES
COCO17_OKS_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
                     0.107, 0.107, 0.087, 0.087, 0.089, 0.089)
"""Per COCO-17 keypoint: the spread of human annotators measured by COCO on redundantly labelled
images, as a fraction of the object scale ``sqrt(area)`` (the ``sigmas`` of the OKS metric in
pycocotools' ``COCOeval``). Nose is clicked most consistently, hips least."""
MPII16_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
    "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
    "left_shoulder", "left_elbow", "left_wrist",
)
H36M17_NAMES = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist",
)
SPIN24_NAMES = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "upper_neck", "head_top", "pelvis", "thorax", "spine", "neck_nose", "head",
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
)
"""SPIN's 24 ``part``/``S`` joints (SPIN ``constants.J24``: r_ankle, r_knee, r_hip, l_hip, l_knee,
l_ankle, r_wrist, r_elbow, r_shoulder, l_shoulder, l_elbow, l_wrist, neck, head_top, pelvis,
thorax, spine, jaw, head, nose, l_eye, r_eye, l_ear, r_ear), spelled in the names of the other
conventions so that :func:`convert` maps them: SPIN's LSP ``neck`` is MPII's ``upper_neck``
(SPIN's MPII preprocessing puts upper-neck there), SPIN's H36M ``jaw`` is Human3.6M's
``neck_nose``, ``head`` is Human3.6M's ``head``."""
COCO_MODEL_PREFIX = "coco_"
"""Prefix of the open model's regressed COCO-style keypoints."""

COCO17_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
    [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]
"""COCO's person skeleton (1-based keypoint indices), as in the official annotation files."""


@dataclass(frozen=True)
class JointConvention:
    """An ordered joint set; see the module docstring for every table."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    model_candidates: tuple[tuple[str, ...], ...]
    root: tuple[int, ...]
    hips: tuple[int, int]

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def index(self, joint: str) -> int:
        """Index of ``joint``; clear error naming the convention otherwise."""
        try:
            return self.joint_names.index(joint)
        except ValueError:
            raise KeyError(f"joint {joint!r} is not in convention {self.name!r} ({', '.join(self.joint_names)})") from None

    def flip_permutation(self) -> list[int]:
        """``perm`` such that ``flipped[:, j] = kps[:, perm[j]]``."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


def _flip_pairs(names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    pairs = []
    for i, n in enumerate(names):
        if n.startswith("left_"):
            j = names.index("right_" + n[len("left_"):])
            pairs.append((i, j))
    return tuple(pairs)


def _make(name, names, candidates, root_joints, hips=("left_hip", "right_hip")) -> JointConvention:
    return JointConvention(
        name=name,
        joint_names=tuple(names),
        flip_pairs=_flip_pairs(tuple(names)),
        model_candidates=tuple(tuple(c) for c in candidates),
        root=tuple(names.index(r) for r in root_joints),
        hips=(names.index(hips[0]), names.index(hips[1])),
    )


def _coco_first(name: str) -> tuple[str, ...]:
    return (COCO_MODEL_PREFIX + name, name)


_MPII_SPECIAL = {"pelvis": ("pelvis",), "thorax": ("neck",), "upper_neck": ("neck",), "head_top": ("head_top",)}
_H36M_SPECIAL = {"spine": ("spine2",), "thorax": ("neck",), "neck_nose": ("nose",), "head": ("head_top",)}

# The keypoint convention the network trains on, SMPLify fits in and the reports evaluate in.
TRAIN_CONVENTION = "coco17"

CONVENTIONS: dict[str, JointConvention] = {
    c.name: c
    for c in (
        _make("smpl24", SMPL_JOINT_NAMES, [(n,) for n in SMPL_JOINT_NAMES], ["pelvis"]),
        _make("coco17", COCO17_NAMES, [_coco_first(n) for n in COCO17_NAMES], ["left_hip", "right_hip"]),
        _make("coco23", COCO23_NAMES, [_coco_first(n) for n in COCO23_NAMES], ["left_hip", "right_hip"]),
        _make("mpii16", MPII16_NAMES, [_MPII_SPECIAL.get(n) or _coco_first(n) for n in MPII16_NAMES],
              ["left_hip", "right_hip"]),
        _make("h36m17", H36M17_NAMES, [_H36M_SPECIAL.get(n, (n,)) for n in H36M17_NAMES], ["pelvis"]),
        _make("spin24", SPIN24_NAMES, [(_MPII_SPECIAL | _H36M_SPECIAL).get(n) or _coco_first(n) for n in SPIN24_NAMES],
              ["left_hip", "right_hip"]),
    )
}


def get_convention(name: str) -> JointConvention:
    """The convention called ``name``; the error lists the known names."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise KeyError(f"unknown joint convention {name!r}; known: {', '.join(sorted(CONVENTIONS))}") from None


def convention_index(model_keypoint_names: list[str] | tuple[str, ...], convention: str) -> torch.LongTensor:
    """``(K,)`` indices into the model's keypoints giving ``convention``'s joints in order.

    For each joint the first of its ``model_candidates`` that the model provides wins.
    """
    conv = get_convention(convention)
    position = {n: i for i, n in enumerate(model_keypoint_names)}
    out = []
    for joint, candidates in zip(conv.joint_names, conv.model_candidates):
        hit = next((position[c] for c in candidates if c in position), None)
        if hit is None:
            raise KeyError(
                f"convention {convention!r}: joint {joint!r} has no body-model keypoint "
                f"(tried {list(candidates)}; the model has {len(position)} keypoints)"
            )
        out.append(hit)
    return torch.tensor(out, dtype=torch.long)


def select_keypoints(model_keypoints: Tensor, model_keypoint_names, convention: str) -> Tensor:
    """``(B, Km, 3)`` model keypoints -> ``(B, K, 3)`` in ``convention`` order."""
    if model_keypoints.shape[-2] != len(model_keypoint_names):
        raise ValueError(
            f"model_keypoints has {model_keypoints.shape[-2]} keypoints but "
            f"{len(model_keypoint_names)} names were given"
        )
    idx = convention_index(model_keypoint_names, convention).to(model_keypoints.device)
    return model_keypoints.index_select(-2, idx)


def flip_keypoints(kps: Tensor, convention: str, image_width: float | Tensor | None = None) -> Tensor:
    """Swap left/right joints of ``(B, K, D)`` keypoints; mirror x if ``image_width`` is given.

    Pixel x uses the product's continuous convention (pixel ``i`` covers ``[i, i+1)``,
    see :mod:`annotator.geometry.crop`), so the mirror of ``x`` is ``image_width - x``
    (pixel centre ``i + 0.5`` -> ``(w - 1 - i) + 0.5``). ``image_width`` may be a
    scalar or a ``(B,)`` tensor. Without it only the joint order changes (e.g. for 3D
    joints mirrored by the caller).
    """
    conv = get_convention(convention)
    if kps.shape[-2] != conv.num_joints:
        raise ValueError(f"flip_keypoints: {convention!r} has {conv.num_joints} joints, got {tuple(kps.shape)}")
    out = kps[..., conv.flip_permutation(), :].clone()
    if image_width is not None:
        w = torch.as_tensor(image_width, dtype=kps.dtype, device=kps.device)
        if w.dim() == 1:
            w = w[:, None]
        out[..., 0] = w - out[..., 0]
    return out


def convert(kps: Tensor, src: str, dst: str) -> tuple[Tensor, Tensor]:
    """Re-order ``(B, K_src, D)`` keypoints into ``dst``: ``(B, K_dst, D)`` and a ``(K_dst,)`` mask.

    Joints of ``dst`` whose name exists in ``src`` are copied; the others are zero and
    ``mask`` is False for them (multiply a confidence channel by it). Matching is by
    name - see the caveat in the module docstring.
    """
    s, d = get_convention(src), get_convention(dst)
    if kps.shape[-2] != s.num_joints:
        raise ValueError(f"convert: {src!r} has {s.num_joints} joints, got {tuple(kps.shape)}")
    src_pos = {n: i for i, n in enumerate(s.joint_names)}
    mask = torch.tensor([n in src_pos for n in d.joint_names], dtype=torch.bool, device=kps.device)
    idx = torch.tensor([src_pos.get(n, 0) for n in d.joint_names], dtype=torch.long, device=kps.device)
    out = kps.index_select(-2, idx) * mask[:, None].to(kps.dtype)
    return out, mask


def root_point(kps: Tensor, convention: str) -> Tensor:
    """``(B, D)`` root of ``(B, K, D)`` joints: pelvis or mid-hip per convention."""
    conv = get_convention(convention)
    return kps[..., list(conv.root), :].mean(dim=-2)
