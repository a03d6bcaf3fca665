"""Pose sampler: activity archetypes perturbed within per-joint anatomical limits.

Every body joint of the SMPL kinematic tree (the 23 joints of ``body_pose``) gets an
intrinsic Euler parametrisation in the joint's rest frame (SMPL rest frames are aligned
with the body frame: x = the subject's left, y = up, z = forward; zero pose = T-pose)
and a box of limits in degrees. The *middle* Euler axis of every joint's order is kept
within +-90 deg, so axis-angle -> Euler is unique and :func:`check_limits` is exact.

Sides. All limits and archetype targets are written **in left-side terms**: a value
for ``right_*`` means "what the mirrored left joint would do". Mirroring through the
sagittal plane keeps the angle about x and negates the angles about y and z, which
:func:`_to_actual` applies to right-side joints. So ``shoulder z = -70`` lowers either
arm to the side, ``hip x = -90`` flexes either thigh forward.

Limits table (left side, degrees, axis order x / y / z, Euler order):

=============  ==========================  =====  ===========================================
joint          x          y          z     order  meaning (left side)
=============  ==========================  =====  ===========================================
hip            -125..35   -40..45   -30..70  XYZ  x<0 flexion (thigh forward), y twist, z>0 abduction
knee           0..150     -15..15   -5..5    XYZ  x>0 flexion (shin backward)
ankle          -30..50    -20..20   -25..25  XYZ  x>0 plantar flexion (toes down)
foot (toes)    -30..30    -5..5     -5..5    XYZ  x toe curl
spine1         -20..45    -20..20   -20..20  XYZ  x>0 forward bend, y axial twist, z side bend
spine2         -15..30    -15..15   -15..15  XYZ  as spine1
spine3         -15..30    -20..20   -15..15  XYZ  as spine1
neck           -35..45    -35..35   -25..25  XYZ  x>0 nod down, y turn, z tilt
head           -30..35    -50..50   -25..25  XYZ  as neck
collar         -15..15    -20..15   -10..30  XYZ  z>0 shrug
shoulder       -100..60   -85..45   -90..90  XYZ  z: -90 arm down .. 0 T-pose .. 90 overhead;
                                                   y<0 horizontal swing forward;
                                                   x<0 swing forward of a lowered arm
elbow          -60..60    -150..0   -10..10  YZX  y<0 flexion (forearm forward), x twist
wrist          -40..40    -30..30   -70..70  XYZ  z flexion/extension, y deviation
hand           -15..15    -15..15   -20..20  XYZ  small
=============  ==========================  =====  ===========================================

These boxes are per-Euler-angle approximations of the joint ranges of motion reported
in the biomechanics literature (e.g. hip flexion ~120-125 deg, knee ~140-150 deg, elbow
~145-150 deg), narrowed where the SMPL rest frame makes an axis mostly a twist.

Archetypes (:data:`ARCHETYPES`) give targets for the joints that define an activity;
unspecified joints target 0 except the defaults of :data:`_RELAXED` (arms down, elbows
slightly bent). Samples add Gaussian noise whose standard deviation is
``archetype.spread * PERTURBATION_FRACTION * (hi - lo)`` per axis (so wide joints move
more), clip to the limits, and mirror asymmetric archetypes left/right with
probability 1/2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

BODY_JOINT_NAMES = (
    "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand",
)
"""The 23 joints of SMPL ``body_pose`` (SMPL joints 1..23) in order."""

NUM_BODY_JOINTS = len(BODY_JOINT_NAMES)


@dataclass(frozen=True)
class JointLimit:
    """Euler order and per-axis limits (degrees; indexed x, y, z) in left-side terms."""

    order: str
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


# Keyed by the joint name without side; see the module docstring table.
_LIMITS_BY_KIND: dict[str, JointLimit] = {
    "hip": JointLimit("XYZ", (-125, -40, -30), (35, 45, 70)),
    "knee": JointLimit("XYZ", (0, -15, -5), (150, 15, 5)),
    "ankle": JointLimit("XYZ", (-30, -20, -25), (50, 20, 25)),
    "foot": JointLimit("XYZ", (-30, -5, -5), (30, 5, 5)),
    "spine1": JointLimit("XYZ", (-20, -20, -20), (45, 20, 20)),
    "spine2": JointLimit("XYZ", (-15, -15, -15), (30, 15, 15)),
    "spine3": JointLimit("XYZ", (-15, -20, -15), (30, 20, 15)),
    "neck": JointLimit("XYZ", (-35, -35, -25), (45, 35, 25)),
    "head": JointLimit("XYZ", (-30, -50, -25), (35, 50, 25)),
    "collar": JointLimit("XYZ", (-15, -20, -10), (15, 15, 30)),
    "shoulder": JointLimit("XYZ", (-100, -85, -90), (60, 45, 90)),
    "elbow": JointLimit("YZX", (-60, -150, -10), (60, 0, 10)),
    "wrist": JointLimit("XYZ", (-40, -30, -70), (40, 30, 70)),
    "hand": JointLimit("XYZ", (-15, -15, -20), (15, 15, 20)),
}

PERTURBATION_FRACTION = 0.15
"""Noise standard deviation as a fraction of each axis' range, times the archetype's
``spread`` (1.0 = wild variety; the lab archetypes use less)."""

_AXIS = {"X": 0, "Y": 1, "Z": 2}


def _kind(joint: str) -> str:
    return joint.split("_", 1)[1] if joint.startswith(("left_", "right_")) else joint


def joint_limits() -> dict[str, JointLimit]:
    """Limits of every body joint (left-side terms; right joints mirrored on use)."""
    return {j: _LIMITS_BY_KIND[_kind(j)] for j in BODY_JOINT_NAMES}


_LIMITS = joint_limits()
_LO = np.array([_LIMITS[j].lo for j in BODY_JOINT_NAMES], dtype=np.float64)  # (23, 3)
_HI = np.array([_LIMITS[j].hi for j in BODY_JOINT_NAMES], dtype=np.float64)
_RIGHT = np.array([j.startswith("right_") for j in BODY_JOINT_NAMES])
_CENTRAL = np.array([not j.startswith(("left_", "right_")) for j in BODY_JOINT_NAMES])
_SWAP = np.array([
    BODY_JOINT_NAMES.index(
        j.replace("left_", "right_") if j.startswith("left_") else j.replace("right_", "left_")
    )
    for j in BODY_JOINT_NAMES
])
_ORDERS = sorted({lim.order for lim in _LIMITS.values()})
_MIRROR_SIGN = np.array([1.0, -1.0, -1.0])
"""Reflection through the sagittal plane keeps the x angle and negates y and z."""


Posture = str
"""Whole-body orientation class: ``upright`` or ``lying_back``/``lying_side``/``lying_front``."""


@dataclass(frozen=True)
class Archetype:
    """An activity: joint targets (degrees, left-side terms) and how it is posed globally."""

    name: str
    targets: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """``joint -> (x, y, z)``; a key without side (``hip``) sets both sides."""
    posture: Posture = "upright"
    spread: float = 1.0
    symmetric: bool = False
    """True: no random left/right mirroring needed."""


_RELAXED = {"shoulder": (0, 0, -70), "elbow": (0, -15, 0)}

ARCHETYPES: dict[str, Archetype] = {a.name: a for a in (
    Archetype("stand", {}, symmetric=True),
    Archetype("walk", {"left_hip": (-25, 0, 0), "right_hip": (15, 0, 0), "left_knee": (10, 0, 0),
                       "right_knee": (35, 0, 0), "left_shoulder": (20, 0, -72),
                       "right_shoulder": (-25, 0, -72), "elbow": (0, -25, 0)}),
    Archetype("run", {"left_hip": (-60, 0, 0), "right_hip": (20, 0, 0), "left_knee": (70, 0, 0),
                      "right_knee": (90, 0, 0), "left_shoulder": (40, 0, -65),
                      "right_shoulder": (-50, 0, -65), "elbow": (0, -90, 0), "spine1": (10, 0, 0)}),
    Archetype("jump", {"hip": (-20, 0, 5), "knee": (40, 0, 0), "ankle": (30, 0, 0),
                       "shoulder": (0, 0, 70), "elbow": (0, -10, 0)}, symmetric=True),
    Archetype("sit_chair", {"hip": (-90, 0, 5), "knee": (90, 0, 0), "shoulder": (-15, 0, -70),
                            "elbow": (0, -45, 0), "spine1": (5, 0, 0)}, symmetric=True),
    Archetype("sit_floor", {"hip": (-80, 0, 40), "knee": (130, 0, 0), "shoulder": (-30, 0, -70),
                            "elbow": (0, -40, 0), "spine1": (15, 0, 0)}, symmetric=True),
    Archetype("squat", {"hip": (-115, 0, 20), "knee": (140, 0, 0), "ankle": (-25, 0, 0),
                        "spine1": (30, 0, 0), "spine2": (10, 0, 0), "shoulder": (-60, 0, -60),
                        "elbow": (0, -30, 0)}, symmetric=True),
    Archetype("kneel", {"hip": (-5, 0, 5), "knee": (95, 0, 0), "ankle": (40, 0, 0),
                        "shoulder": (0, 0, -70)}, symmetric=True),
    Archetype("lunge", {"left_hip": (-80, 0, 0), "left_knee": (90, 0, 0), "right_hip": (20, 0, 0),
                        "right_knee": (10, 0, 0), "spine1": (5, 0, 0), "shoulder": (0, 0, -60)}),
    Archetype("reach_up", {"left_shoulder": (0, 0, 75), "right_shoulder": (0, 0, -65),
                           "left_elbow": (0, -5, 0), "spine1": (0, 0, 8), "head": (-20, 0, 0)}),
    Archetype("reach_forward", {"shoulder": (0, -75, -10), "elbow": (0, -10, 0), "spine1": (20, 0, 0),
                                "hip": (-10, 0, 0)}, symmetric=True),
    Archetype("throw", {"right_shoulder": (0, 40, 40), "right_elbow": (0, -100, 0),
                        "left_shoulder": (0, -60, -10), "spine1": (0, 20, 0), "spine2": (0, 10, 0),
                        "left_hip": (-30, 0, 0), "right_hip": (15, 0, 0), "knee": (20, 0, 0)}),
    Archetype("kick", {"right_hip": (-80, 0, 0), "right_knee": (20, 0, 0), "left_knee": (10, 0, 0),
                       "shoulder": (0, -20, -30), "spine1": (-10, 0, 0)}),
    Archetype("dance", {"left_shoulder": (0, 0, 60), "right_shoulder": (0, -30, 20), "elbow": (0, -60, 0),
                        "left_hip": (-40, 0, 20), "left_knee": (70, 0, 0), "spine1": (0, 0, 10),
                        "head": (0, 0, 10)}, spread=1.2),
    Archetype("bend_pickup", {"spine1": (40, 0, 0), "spine2": (30, 0, 0), "spine3": (20, 0, 0),
                              "hip": (-60, 0, 0), "knee": (20, 0, 0), "shoulder": (-70, 0, -70),
                              "neck": (-20, 0, 0)}, symmetric=True),
    Archetype("swing", {"spine1": (10, 30, 0), "spine2": (0, 10, 0), "shoulder": (0, -70, -45),
                        "left_elbow": (0, -10, 0), "right_elbow": (0, -40, 0), "hip": (-20, 0, 0),
                        "knee": (25, 0, 0)}),
    Archetype("phone", {"right_shoulder": (0, -30, -40), "right_elbow": (0, -140, 0),
                        "head": (0, 0, 10)}),
    Archetype("ski", {"knee": (50, 0, 0), "hip": (-50, 0, 0), "ankle": (-20, 0, 0), "spine1": (25, 0, 0),
                      "shoulder": (0, -30, -30), "elbow": (0, -40, 0)}, symmetric=True),
    Archetype("yoga_tree", {"left_hip": (-45, 0, 45), "left_knee": (120, 0, 0), "shoulder": (0, 0, 80),
                            "elbow": (0, 0, 0)}),
    Archetype("lie_back", {"shoulder": (0, 0, -50), "left_knee": (20, 0, 0)}, posture="lying_back"),
    Archetype("lie_side", {"hip": (-40, 0, 0), "knee": (60, 0, 0), "shoulder": (-40, 0, -60),
                           "elbow": (0, -60, 0)}, posture="lying_side"),
    Archetype("lie_front", {"shoulder": (0, 0, 40), "elbow": (0, -60, 0), "right_knee": (30, 0, 0)},
              posture="lying_front"),
)}

WILD_ARCHETYPES = tuple(ARCHETYPES)
"""COCO/MPII-like: every activity, including sports, floor and lying poses."""

LAB_ARCHETYPES = ("stand", "walk", "sit_chair", "phone", "reach_forward", "bend_pickup", "squat", "reach_up")
"""Human3.6M / MPI-INF-3DHP-like everyday actions."""

LAB_SPREAD = 0.6
"""Lab poses vary less around their archetypes than wild ones (scales ``spread``)."""


def _targets_array(arch: Archetype) -> np.ndarray:
    """``(23, 3)`` Euler targets (degrees, left-side terms) of one archetype."""
    out = np.zeros((NUM_BODY_JOINTS, 3))
    for spec in (_RELAXED, arch.targets):
        for key, value in spec.items():
            if key in BODY_JOINT_NAMES:
                names = [key]
            elif f"left_{key}" in BODY_JOINT_NAMES:
                names = [f"left_{key}", f"right_{key}"]
            else:
                raise KeyError(f"archetype {arch.name!r}: unknown joint {key!r}")
            for n in names:
                out[BODY_JOINT_NAMES.index(n)] = value
    return out


def _to_actual(euler_left_terms: np.ndarray) -> np.ndarray:
    """Left-side-terms Euler ``(..., 23, 3)`` -> the joints' actual Euler angles."""
    return np.where(_RIGHT[:, None], euler_left_terms * _MIRROR_SIGN, euler_left_terms)


def _from_actual(euler_actual: np.ndarray) -> np.ndarray:
    return _to_actual(euler_actual)  # the mirror is an involution


def mirror_left_terms(euler_left_terms: np.ndarray) -> np.ndarray:
    """Mirror whole poses (``(N, 23, 3)`` left-side terms): swap sides, negate central y/z."""
    out = euler_left_terms[:, _SWAP]
    return np.where(_CENTRAL[:, None], out * _MIRROR_SIGN, out)


def euler_to_axis_angle(euler_actual: np.ndarray) -> np.ndarray:
    """``(N, 23, 3)`` actual Euler angles (degrees, x/y/z) -> ``(N, 69)`` axis-angle body_pose."""
    n = euler_actual.shape[0]
    out = np.zeros((n, NUM_BODY_JOINTS, 3))
    for order in _ORDERS:  # one vectorised scipy call per distinct Euler order
        cols = [j for j, name in enumerate(BODY_JOINT_NAMES) if _LIMITS[name].order == order]
        angles = euler_actual[:, cols][..., [_AXIS[a] for a in order]]
        rot = Rotation.from_euler(order, angles.reshape(-1, 3), degrees=True)
        out[:, cols] = rot.as_rotvec().reshape(n, len(cols), 3)
    return out.reshape(n, NUM_BODY_JOINTS * 3)


def axis_angle_to_euler(body_pose: np.ndarray) -> np.ndarray:
    """``(N, 69)`` axis-angle -> ``(N, 23, 3)`` Euler angles in left-side terms (degrees)."""
    aa = np.asarray(body_pose, dtype=np.float64).reshape(-1, NUM_BODY_JOINTS, 3)
    n = aa.shape[0]
    actual = np.zeros_like(aa)
    for order in _ORDERS:
        cols = [j for j, name in enumerate(BODY_JOINT_NAMES) if _LIMITS[name].order == order]
        eul = Rotation.from_rotvec(aa[:, cols].reshape(-1, 3)).as_euler(order, degrees=True)
        eul = eul.reshape(n, len(cols), 3)
        for pos, axis in enumerate(order):
            actual[:, cols, _AXIS[axis]] = eul[..., pos]
    return _from_actual(actual)


LIMIT_CHECK_TOLERANCE_DEG = 1e-3
"""Round-off allowed when checking Euler angles recovered from axis-angle."""


def check_limits(body_pose: np.ndarray) -> np.ndarray:
    """``(N, 23)`` bool: joint within its limits (see the module table)."""
    eul = axis_angle_to_euler(body_pose)
    tol = LIMIT_CHECK_TOLERANCE_DEG
    return ((eul >= _LO - tol) & (eul <= _HI + tol)).all(axis=-1)


@dataclass
class PoseSample:
    """A batch of sampled poses."""

    body_pose: np.ndarray
    """``(N, 69)`` axis-angle (float64)."""
    archetype: list[str]
    posture: list[Posture]


def sample_poses(
    rng: np.random.Generator, n: int, archetypes: tuple[str, ...] = WILD_ARCHETYPES, spread_scale: float = 1.0
) -> PoseSample:
    """Draw ``n`` poses: an archetype uniformly from ``archetypes``, perturbed and clipped."""
    unknown = [a for a in archetypes if a not in ARCHETYPES]
    if unknown:
        raise KeyError(f"unknown archetype(s) {unknown}; known: {', '.join(ARCHETYPES)}")
    arch = [ARCHETYPES[archetypes[i]] for i in rng.integers(0, len(archetypes), size=n)]
    targets = np.stack([_targets_array(a) for a in arch]) if n else np.zeros((0, NUM_BODY_JOINTS, 3))
    spread = np.array([a.spread for a in arch])[:, None, None] * spread_scale
    noise = rng.standard_normal((n, NUM_BODY_JOINTS, 3)) * spread * PERTURBATION_FRACTION * (_HI - _LO)
    euler = np.clip(targets + noise, _LO, _HI)
    flip = rng.random(n) < 0.5
    flip &= np.array([not a.symmetric for a in arch], dtype=bool)
    euler = np.where(flip[:, None, None], mirror_left_terms(euler), euler)
    # Mirrored central-joint angles stay inside the limits only if those are symmetric
    # in y/z; clip again so every returned pose satisfies check_limits by construction.
    euler = np.clip(euler, _LO, _HI)
    return PoseSample(
        body_pose=euler_to_axis_angle(_to_actual(euler)),
        archetype=[a.name for a in arch],
        posture=[a.posture for a in arch],
    )
