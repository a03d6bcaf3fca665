"""Scenes of the synthetic world: domains, cameras, people placement, clothing, lighting,
rendering and keypoint visibility.

Frames
------
* World: y up, metres; the floor (lab, wild3d) is ``y = 0``. A person with global
  rotation ``R_w`` in the world faces ``R_w @ +z`` (the SMPL body faces +z).
* Camera: OpenCV (x right, y down, z forward). ``R_cw`` maps world directions into the
  camera; every ground-truth parameter (``global_orient``, ``transl``, joints) is in the
  camera frame, so ``global_orient = R_cw @ R_w``.

Domains (:data:`DOMAINS`)
-------------------------
* ``wild`` (COCO/MPII-like): 1-4 people anywhere in the frame (their pelvis projects
  inside it, limbs may leave it), apparent heights from a third of the image to more
  than the image (truncation), half of the extra people placed near an earlier one at
  another depth (occlusion), field of view 40-80 deg on the long side, cluttered
  backgrounds, every archetype including floor and lying poses.
* ``lab`` (Human3.6M/MPI-INF-3DHP-like): one subject standing on the studio floor near
  the capture-volume centre, seen by one of :data:`LAB_CAMERAS` (fixed intrinsics and
  extrinsics), plain backgrounds, everyday archetypes.
* ``wild3d`` (3DPW-like): 1-2 people on the ground 2.5-6 m from a hand-held camera at
  eye height, portrait images, wild backgrounds, everyday archetypes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from scipy.stats import truncnorm

from annotator.data.synth import background as bg
from annotator.data.synth.poses import LAB_ARCHETYPES, LAB_SPREAD, WILD_ARCHETYPES, sample_poses
from annotator.render import Fragments, Light, PerspectiveCameras, render_meshes
from annotator.geometry import perspective_projection

Tensor = torch.Tensor

NOMINAL_HEIGHT_M = 1.7
"""Body height used to turn a wanted apparent height (px) into a depth (the open model's
mean height is 1.69 m)."""

BETA_TRUNCATION = 2.5
"""Betas ~ N(0, I) truncated at +-2.5 sd: the open model's shapedirs are the PCA of
anny's adult shape distribution scaled to unit variance, so this is that distribution's
Gaussian approximation without its rare extremes."""

MIN_SEPARATION_M = 0.9
"""Minimum 3D distance between two people's pelvises; closer people would interpenetrate."""

LEAN_DEG = 8.0
"""Std of the random whole-body lean (about the world x and z axes) of every person."""

FACING_SHARE = 0.65
FACING_YAW_DEG = 60.0
"""Wild: a share ``FACING_SHARE`` of people face the camera within +-FACING_YAW_DEG
(as in COCO, where most people face the photographer); the rest have any yaw."""

OCCLUDER_SHARE = 0.5
"""Wild: probability that an extra person is placed near an earlier one's image position
(at another depth), so that people occlude each other."""

WILD_PITCH_DEG = (-15.0, 15.0)
"""Wild camera pitch range (up/down tilt of a photographer's camera)."""
WILD3D_PITCH_DEG = (0.0, 12.0)
"""wild3d: a hand-held camera at eye height looks slightly down at the people."""
WILD3D_EYE_HEIGHT_M = (1.2, 1.7)
ROLL_STD_DEG = 3.0
"""Hand-held camera roll (std)."""
WILD_PELVIS_U = (0.05, 0.95)
WILD_PELVIS_V = (0.15, 0.9)
"""Wild: the pelvis projects into this share of the image width/height, so every person
is at least partly in view (and has labelled keypoints); limbs may leave the frame."""
WILD_LYING_PELVIS_V = (0.5, 0.9)
"""Wild: people lying down are seen in the lower half of the frame (on the ground)."""
OCCLUDER_OFFSET = (0.15, 0.1)
"""Std of an occluder's pixel offset from the person it is placed near, as a share of
that person's apparent height (horizontal, vertical)."""
OCCLUDER_DEPTH_RATIO = (0.6, 1.6)
"""An occluder's depth relative to that person: in front or behind."""
WILD3D_LATERAL = 0.6
"""wild3d: people stand within this share of the half field of view from its centre."""
PLACEMENT_TRIES = 8
"""Rejection-sampling attempts to keep wild3d people MIN_SEPARATION_M apart (then accept)."""
LIGHT_DIRECTION_BOX = ((-0.6, 0.6), (-1.0, -0.2), (-1.0, -0.3))
"""Ranges of the (x, y, z) camera-frame direction towards the light before normalising:
from above (-y) and from the camera's side (-z), left or right."""
AMBIENT_RANGE = (0.3, 0.5)
"""Share of ambient light in the Lambert model (the rest comes from one distant light)."""

NUM_PARTS = 25
"""24 SMPL skinning parts (argmax of the skinning weights) + 1 hair region on the head."""
HAIR_PART = 24

#: Lab: (azimuth deg, distance m, height m, focal scale, principal-point offset px) of the
#: four fixed cameras, looking at LAB_TARGET; like the four Human3.6M cameras around the
#: capture volume, each with its own slightly different intrinsics.
LAB_CAMERAS = (
    (45.0, 4.2, 1.55, 1.00, (1.5, -2.0)),
    (135.0, 4.0, 1.45, 0.98, (-1.0, 1.5)),
    (225.0, 4.3, 1.60, 1.02, (2.0, 0.5)),
    (315.0, 4.1, 1.50, 1.01, (-0.5, -1.0)),
)
LAB_TARGET = (0.0, 0.95, 0.0)
LAB_FOV_DEG = 48.0
"""Field of view (long side) of the lab cameras at focal scale 1 (Human3.6M: ~47 deg)."""
LAB_WALL_DISTANCE_M = 2.5
"""The studio wall stands this far behind the capture-volume centre (seen from each camera)."""
LAB_AREA_M = 0.5
"""The lab subject stands within +-LAB_AREA_M of the capture-volume centre (x and z)."""


@dataclass(frozen=True)
class DomainSpec:
    """Everything that distinguishes one synthetic domain from another."""

    name: str
    image_sizes: tuple[tuple[int, int], ...]
    """Candidate (width, height); one is drawn per image."""
    people: tuple[int, int]
    archetypes: tuple[str, ...]
    spread_scale: float
    fov_deg: tuple[float, float]
    placement: str
    """``screen`` (pelvis pixel + depth) or ``floor`` (feet on the world floor)."""
    background: str
    """``studio`` or ``wild``."""
    height_frac: tuple[float, float] = (0.3, 1.2)
    """screen placement: apparent height / image height, log-uniform."""
    distance_m: tuple[float, float] = (2.5, 6.0)
    """floor placement (wild3d): camera-to-person distance."""


EVERYDAY = ("stand", "walk", "sit_chair", "phone", "reach_forward", "bend_pickup", "reach_up", "squat", "swing")

DOMAINS: dict[str, DomainSpec] = {
    "wild": DomainSpec("wild", ((320, 240), (240, 320), (320, 320)), (1, 4), WILD_ARCHETYPES, 1.0,
                       (40.0, 80.0), "screen", "wild"),
    "lab": DomainSpec("lab", ((256, 256),), (1, 1), LAB_ARCHETYPES, LAB_SPREAD,
                      (LAB_FOV_DEG, LAB_FOV_DEG), "floor", "studio"),
    "wild3d": DomainSpec("wild3d", ((256, 384),), (1, 2), EVERYDAY, 0.8, (50.0, 65.0), "floor", "wild"),
}
DOMAIN_CODES = {"wild": 1, "lab": 2, "wild3d": 3}
"""Mixed into every image's seed so the domains draw independent streams."""


# --------------------------------------------------------------------------- cameras


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """World -> OpenCV camera rotation ``R_cw`` (rows: camera x right, y down, z forward)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def focal_from_fov(fov_deg: float, long_side: int) -> float:
    """Focal (px) giving ``fov_deg`` across the image's long side."""
    return 0.5 * long_side / np.tan(np.radians(fov_deg) / 2.0)


# --------------------------------------------------------------------------- plans


@dataclass
class PersonPlan:
    body_pose: np.ndarray
    betas: np.ndarray
    rot_world: np.ndarray
    """(3, 3) body orientation in the world."""
    archetype: str
    placement: np.ndarray
    """screen: (u, v, depth); floor: (x, z, 0) world position on the floor."""
    colours: np.ndarray
    """(NUM_PARTS, 3) albedo per part."""


@dataclass
class ImagePlan:
    index: int
    width: int
    height: int
    focal: float
    principal_point: np.ndarray
    rot_cw: np.ndarray
    cam_centre: np.ndarray
    """Camera centre in the world (floor placement)."""
    light_dir: np.ndarray
    ambient: float
    people: list[PersonPlan]
    rng: np.random.Generator
    """The image's own stream, continued by the background after planning."""
    placement: str = "screen"
    """How its people were placed (:attr:`DomainSpec.placement`)."""
    camera_id: int = -1
    """Lab: which of :data:`LAB_CAMERAS`; else -1."""

    @property
    def light(self) -> Light:
        """The image's sampled light (:data:`LIGHT_DIRECTION_BOX`, :data:`AMBIENT_RANGE`)."""
        return Light(direction=tuple(float(c) for c in self.light_dir), ambient=self.ambient)

    def cameras(self, n: int, dtype: torch.dtype = torch.float32) -> PerspectiveCameras:
        """The image's camera, once for each of ``n`` meshes."""
        return PerspectiveCameras(torch.full((n,), self.focal, dtype=dtype),
                                  torch.as_tensor(self.principal_point, dtype=dtype).expand(n, 2))


def image_rng(seed: int, domain: str, index: int) -> np.random.Generator:
    """The independent random stream of image ``index`` (order-free, chunk-free)."""
    return np.random.default_rng([int(seed), DOMAIN_CODES[domain], int(index)])


_SKIN_TONES = np.array([
    [0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.80, 0.60, 0.45], [0.65, 0.46, 0.32],
    [0.48, 0.33, 0.22], [0.33, 0.22, 0.15],
])
_HAIR_COLOURS = np.array([
    [0.05, 0.04, 0.03], [0.20, 0.12, 0.06], [0.40, 0.26, 0.13], [0.80, 0.65, 0.40],
    [0.60, 0.60, 0.60], [0.50, 0.20, 0.08],
])
# Garment region of each SMPL part (skinning argmax): 0 skin, 1 top, 2 bottom, 3 shoes,
# 4 hair, 5 sleeve (forearm: top or skin), 6 upper sleeve (upper arm: top, or skin when
# sleeveless), 7 trouser leg (shin: bottom or skin).
_PART_REGION = np.array([
    2, 2, 2, 1, 7, 7, 1, 3, 3, 1, 3, 3,  # pelvis, hips, spine1, knees, spine2, ankles, spine3, feet
    0, 1, 1, 0, 6, 6, 5, 5, 0, 0, 0, 0,  # neck, collars, head, shoulders, elbows, wrists, hands
    4,  # hair
])
LONG_SLEEVE_SHARE = 0.4
SLEEVELESS_SHARE = 0.15
LONG_TROUSERS_SHARE = 0.6
BALD_SHARE = 0.1
SKIN_JITTER = (0.92, 1.08)
"""Per-person brightness factor on the skin-tone palette entry."""
GARMENT_SATURATION = (0.1, 0.9)
GARMENT_VALUE = (0.12, 0.95)
"""HSV ranges of garment colours (hue uniform): from greys and near-black to vivid."""
SHOE_DARKENING = 0.6
"""Shoes take a garment colour darkened by this factor (shoes are mostly dark)."""


def sample_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, NUM_PARTS, 3)`` per-part albedo: skin, hair, top, bottom, shoes + sleeve/leg lengths."""
    skin = _SKIN_TONES[rng.integers(0, len(_SKIN_TONES), n)] * rng.uniform(*SKIN_JITTER, (n, 1))
    hair = _HAIR_COLOURS[rng.integers(0, len(_HAIR_COLOURS), n)]
    hair = np.where((rng.random(n) < BALD_SHARE)[:, None], skin, hair)
    garments = bg.hsv_to_rgb(rng.random((n, 3)), rng.uniform(*GARMENT_SATURATION, (n, 3)),
                             rng.uniform(*GARMENT_VALUE, (n, 3)))
    top, bottom, shoes = garments[:, 0], garments[:, 1], garments[:, 2] * SHOE_DARKENING
    long_sleeve = (rng.random(n) < LONG_SLEEVE_SHARE)[:, None]
    sleeveless = (rng.random(n) < SLEEVELESS_SHARE)[:, None]
    long_trousers = (rng.random(n) < LONG_TROUSERS_SHARE)[:, None]
    regions = np.stack([
        skin, top, bottom, shoes, hair,
        np.where(long_sleeve, top, skin),
        np.where(sleeveless, skin, top),
        np.where(long_trousers, bottom, skin),
    ], axis=1)  # (n, 8, 3)
    return np.clip(regions[:, _PART_REGION], 0.0, 1.0)


def _rot(axis: str, deg: float) -> np.ndarray:
    return Rotation.from_euler(axis, deg, degrees=True).as_matrix()


_POSTURE_ROT = {
    "upright": np.eye(3),
    "lying_back": _rot("x", -90.0),  # face up
    "lying_front": _rot("x", 90.0),  # face down
}


def _posture_rotation(posture: str, side_roll_deg: float) -> np.ndarray:
    """World rotation of a posture; ``lying_side`` rolls the face-up body onto one side."""
    if posture == "lying_side":
        return _rot("z", side_roll_deg) @ _POSTURE_ROT["lying_back"]
    return _POSTURE_ROT[posture]


def _people_count(rng: np.random.Generator, spec: DomainSpec) -> int:
    lo, hi = spec.people
    return int(rng.integers(lo, hi, endpoint=True))


def plan_image(spec: DomainSpec, seed: int, index: int, image_size: tuple[int, int] | None = None) -> ImagePlan:
    """Draw camera, people (pose, shape, orientation, placement, clothes) and light of one image."""
    rng = image_rng(seed, spec.name, index)
    width, height = image_size or spec.image_sizes[int(rng.integers(0, len(spec.image_sizes)))]
    n = _people_count(rng, spec)
    camera_id = -1
    if spec.name == "lab":
        camera_id = int(rng.integers(0, len(LAB_CAMERAS)))
        az, dist, cam_h, f_scale, pp_off = LAB_CAMERAS[camera_id]
        eye = np.array([dist * np.sin(np.radians(az)), cam_h, dist * np.cos(np.radians(az))])
        rot_cw = look_at(eye, np.array(LAB_TARGET))
        focal = focal_from_fov(LAB_FOV_DEG, max(width, height)) * f_scale
        pp = np.array([width / 2.0 + pp_off[0], height / 2.0 + pp_off[1]])
    else:
        fov = rng.uniform(*spec.fov_deg)
        focal = focal_from_fov(fov, max(width, height))
        pp = np.array([width / 2.0, height / 2.0])
        if spec.name == "wild3d":
            eye = np.array([0.0, rng.uniform(*WILD3D_EYE_HEIGHT_M), 0.0])
            pitch = np.radians(rng.uniform(*WILD3D_PITCH_DEG))
        else:
            eye = np.zeros(3)
            pitch = np.radians(rng.uniform(*WILD_PITCH_DEG))
        rot_cw = look_at(eye, eye + np.array([0.0, -np.tan(pitch), -1.0]))  # along world -z, pitched down
        rot_cw = _rot("z", rng.normal(0.0, ROLL_STD_DEG)) @ rot_cw

    poses = sample_poses(rng, n, spec.archetypes, spec.spread_scale)
    betas = truncnorm.rvs(-BETA_TRUNCATION, BETA_TRUNCATION, size=(n, 10), random_state=rng)
    colours = sample_colours(rng, n)
    facing = rng.random(n) < (FACING_SHARE if spec.name == "wild" else 0.0)
    yaw = np.where(facing, rng.uniform(-FACING_YAW_DEG, FACING_YAW_DEG, n), rng.uniform(-180.0, 180.0, n))
    if spec.placement == "floor":  # yaw relative to the camera's viewing direction (0: facing it)
        yaw = yaw + np.degrees(np.arctan2(-rot_cw[2, 0], -rot_cw[2, 2]))
    lean = Rotation.from_euler("XZ", rng.normal(0.0, LEAN_DEG, (n, 2)), degrees=True).as_matrix()
    side_roll = rng.choice([-90.0, 90.0], n)
    posture = np.stack([_posture_rotation(p, r) for p, r in zip(poses.posture, side_roll)])
    rot_world = Rotation.from_euler("y", yaw[:, None], degrees=True).as_matrix() @ posture @ lean
    people = [PersonPlan(poses.body_pose[k], betas[k], rot_world[k], poses.archetype[k], np.zeros(3), colours[k])
              for k in range(n)]
    _place(spec, rng, people, [p != "upright" for p in poses.posture], width, height, focal, pp, rot_cw, eye)

    light = np.array([rng.uniform(lo, hi) for lo, hi in LIGHT_DIRECTION_BOX])
    return ImagePlan(index=index, width=int(width), height=int(height), focal=float(focal), principal_point=pp,
                     rot_cw=rot_cw, cam_centre=eye, light_dir=light / np.linalg.norm(light),
                     ambient=float(rng.uniform(*AMBIENT_RANGE)), people=people, rng=rng,
                     placement=spec.placement, camera_id=camera_id)


def _place(spec, rng, people, lying, width, height, focal, pp, rot_cw, eye) -> None:
    """Fill ``PersonPlan.placement`` (see its docstring) for every person of an image."""
    if spec.name == "lab":
        for p in people:
            p.placement = np.append(rng.uniform(-LAB_AREA_M, LAB_AREA_M, 2), 0.0)
        return
    if spec.placement == "floor":  # wild3d: spread across the view at 2.5-6 m
        fwd = rot_cw[2] * np.array([1.0, 0.0, 1.0])
        fwd /= np.linalg.norm(fwd)
        right = np.array([-fwd[2], 0.0, fwd[0]])
        half_view = 0.5 * width / focal
        spots = []
        for p in people:
            for _ in range(PLACEMENT_TRIES):  # rejection: keep people apart
                d = rng.uniform(*spec.distance_m)
                s = rng.uniform(-WILD3D_LATERAL, WILD3D_LATERAL) * half_view * d
                spot = eye[[0, 2]] + d * fwd[[0, 2]] + s * right[[0, 2]]
                if all(np.linalg.norm(spot - o) >= MIN_SEPARATION_M for o in spots):
                    break
            spots.append(spot)
            p.placement = np.array([spot[0], spot[1], 0.0])
        return
    # wild: pelvis pixel + depth in the camera frame
    centres: list[np.ndarray] = []
    for k, p in enumerate(people):
        frac = np.exp(rng.uniform(*np.log(spec.height_frac)))
        depth = focal * NOMINAL_HEIGHT_M / (frac * height)
        u_lo, u_hi = np.array(WILD_PELVIS_U) * width
        v_lo, v_hi = np.array(WILD_LYING_PELVIS_V if lying[k] else WILD_PELVIS_V) * height
        u, v = rng.uniform(u_lo, u_hi), rng.uniform(v_lo, v_hi)
        if k and rng.random() < OCCLUDER_SHARE:
            ref = people[int(rng.integers(0, k))].placement
            ref_px = focal * NOMINAL_HEIGHT_M / ref[2]
            u = np.clip(ref[0] + rng.normal(0, OCCLUDER_OFFSET[0] * ref_px), u_lo, u_hi)
            v = np.clip(ref[1] + rng.normal(0, OCCLUDER_OFFSET[1] * ref_px), v_lo, v_hi)
            depth = ref[2] * rng.uniform(*OCCLUDER_DEPTH_RATIO)
        ray = np.array([(u - pp[0]) / focal, (v - pp[1]) / focal, 1.0])
        for c in centres:  # push back along the ray until clear of everyone placed so far
            if np.linalg.norm(ray * depth - c) < MIN_SEPARATION_M:
                depth += MIN_SEPARATION_M
        centres.append(ray * depth)
        p.placement = np.array([u, v, depth])


# --------------------------------------------------------------------------- visibility

OCCLUSION_TOLERANCE_M = 0.02
"""A surface hides a keypoint only if it is at least this much nearer than the keypoint.
Absorbs the depth buffer's interpolation error and lets skin that merely touches the
keypoint's region (a hand resting on a knee seen from the side) count as not covering it."""

SURFACE_KEYPOINT_TOLERANCE_M = 0.03
"""Face keypoints (nose, eyes, ears) sit on the skin (the open model's COCO face points
are within ~5 mm of it): any surface, the person's own included, more than 3 cm nearer
hides them - e.g. the back of the head hides the nose of a person facing away."""

NUM_SURFACE_KEYPOINTS = 5
"""coco17 keypoints 0-4 (nose, eyes, ears) are surface points; the others are inside limbs."""

# For joints inside the body, the skin right around them belongs to these skinning parts
# (SMPL joint names): that skin is the joint's own surface and never hides it. Any other
# part, of the same person or of someone else, hides the joint when nearer (above).
_OWN_PARTS = {
    "shoulder": ("shoulder", "collar", "spine3"),
    "elbow": ("shoulder", "elbow"),
    "wrist": ("elbow", "wrist", "hand"),
    "hip": ("pelvis", "hip", "spine1"),
    "knee": ("hip", "knee"),
    "ankle": ("knee", "ankle", "foot"),
}


def own_parts_table(coco_names: tuple[str, ...], smpl_names: tuple[str, ...]) -> np.ndarray:
    """``(K, NUM_PARTS)`` bool: part ``j`` is keypoint ``k``'s own skin (same side)."""
    table = np.zeros((len(coco_names), NUM_PARTS), dtype=bool)
    for k, name in enumerate(coco_names):
        side, _, kind = name.partition("_")
        for part in _OWN_PARTS.get(kind, ()):
            for cand in (f"{side}_{part}", part):
                if cand in smpl_names:
                    table[k, smpl_names.index(cand)] = True
    return table


def keypoint_visibility(
    uv: Tensor, depth: Tensor, person_index: Tensor, fragments: Fragments, face_owner: Tensor, face_part: Tensor,
    own_parts: Tensor, width: int, height: int,
) -> Tensor:
    """COCO visibility ``(N, K)`` int64: 0 outside the image, 1 occluded, 2 visible.

    ``uv``/``depth`` ``(N, K, 2)``/``(N, K)`` keypoints of the ``N`` people of an image,
    ``person_index`` ``(N,)`` their index in the image's mesh list, ``face_owner``
    ``(F_total,)`` the person of every rendered triangle (meshes concatenated in person
    order), ``face_part`` ``(F,)`` the skinning part of every triangle of one mesh,
    ``own_parts`` ``(K, NUM_PARTS)`` from :func:`own_parts_table`.
    """
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
    col = uv[..., 0].floor().long().clamp(0, width - 1)
    row = uv[..., 1].floor().long().clamp(0, height - 1)
    face = fragments.face_index[row, col]
    covered = face >= 0
    safe = face.clamp(min=0)
    surf_depth = fragments.depth[row, col]
    nearer = surf_depth < depth - OCCLUSION_TOLERANCE_M
    same_person = face_owner[safe] == person_index[:, None]
    k_idx = torch.arange(uv.shape[1]).expand_as(face)
    own = same_person & own_parts[k_idx, face_part[safe % face_part.shape[0]]]
    occluded = covered & nearer & ~own
    surface_kp = k_idx < NUM_SURFACE_KEYPOINTS
    occluded = torch.where(surface_kp, covered & (surf_depth < depth - SURFACE_KEYPOINT_TOLERANCE_M), occluded)
    vis = torch.where(occluded, 1, 2)
    return torch.where(inside, vis, 0)


# --------------------------------------------------------------------------- rendering


@dataclass
class MeshAssets:
    """Per-model rendering data derived once from the body model."""

    faces: Tensor
    """(F, 3) int64."""
    vertex_part: Tensor
    """(V,) int64 in [0, NUM_PARTS): skinning argmax, hair region on the head."""
    face_part: Tensor
    """(F,) part of each triangle (that of its first vertex)."""


HAIR_ABOVE_HEAD_JOINT_M = 0.09
"""Rest-pose head vertices this far above the head joint (~ the brow line) are hair..."""
HAIR_BEHIND_HEAD_JOINT_M = 0.0
"""... and so are those behind the head joint plane and above the joint (the back of the head)."""


def mesh_assets(faces: Tensor, skinning_weights: Tensor, rest_vertices: Tensor, rest_joints: Tensor,
                head_index: int) -> MeshAssets:
    """Part labels for colouring and visibility (see :class:`MeshAssets`)."""
    part = skinning_weights.argmax(dim=1)
    rel = rest_vertices - rest_joints[head_index]
    hair = (part == head_index) & (
        (rel[:, 1] > HAIR_ABOVE_HEAD_JOINT_M) | ((rel[:, 2] < HAIR_BEHIND_HEAD_JOINT_M) & (rel[:, 1] > 0.0))
    )
    part = torch.where(hair, torch.full_like(part, HAIR_PART), part)
    faces = faces.long()
    return MeshAssets(faces=faces, vertex_part=part, face_part=part[faces[:, 0]])


@dataclass
class Rendered:
    image: np.ndarray
    """(H, W, 3) uint8."""
    fragments: Fragments
    face_owner: Tensor
    """(F_total,) person index (within the image) of every triangle."""


def project(points: Tensor, plan: ImagePlan) -> Tensor:
    """``(N, P, 3)`` camera-frame points -> ``(N, P, 2)`` pixels with the image's camera."""
    n = points.shape[0]
    focal = torch.full((n,), plan.focal, dtype=points.dtype)
    pp = torch.as_tensor(plan.principal_point, dtype=points.dtype).expand(n, 2)
    return perspective_projection(points, focal, pp)


def render_image(plan: ImagePlan, background: np.ndarray, vertices: Tensor, normals: Tensor,
                 vertex_colours: Tensor, assets: MeshAssets) -> Rendered:
    """Rasterise and shade the ``N`` people ``(N, V, 3)`` (camera frame) over ``background``
    with the image's camera and sampled light (:func:`annotator.render.render_meshes`)."""
    out = render_meshes(vertices, assets.faces, plan.cameras(vertices.shape[0]), (plan.width, plan.height),
                        vertex_colours, normals=normals, light=plan.light)
    img = torch.where(out.mask[..., None], out.rgb, torch.from_numpy(background.astype(np.float32)))
    img = (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    return Rendered(image=img.numpy(), fragments=out.fragments, face_owner=out.face_owner)


def make_background(plan: ImagePlan, spec: DomainSpec) -> np.ndarray:
    """The image's background, drawn from its own stream after planning."""
    if spec.background == "studio":
        # the floor/wall seam: the floor point LAB_WALL_DISTANCE_M behind the capture centre
        fwd = plan.rot_cw[2] * np.array([1.0, 0.0, 1.0])
        seam = np.array([LAB_TARGET[0], 0.0, LAB_TARGET[2]]) + LAB_WALL_DISTANCE_M * fwd / np.linalg.norm(fwd)
        cam = plan.rot_cw @ (seam - plan.cam_centre)
        floor_row = plan.principal_point[1] + plan.focal * cam[1] / cam[2]
        return bg.studio_background(plan.rng, plan.height, plan.width, float(np.clip(floor_row, 0, plan.height)))
    return bg.wild_background(plan.rng, plan.height, plan.width)


def person_boxes(fragments: Fragments, face_owner: Tensor, n: int, fallback_uv: Tensor, width: int, height: int):
    """Tight boxes ``(n, 4)`` ``[x, y, w, h]`` of each person's visible pixels and their areas ``(n,)``.

    A person with no visible pixel (fully hidden) gets the box of its projected
    vertices clipped to the image (``fallback_uv`` ``(n, V, 2)``) and area 0.
    """
    flat = fragments.face_index.reshape(-1)
    pix = torch.nonzero(flat >= 0).squeeze(1)
    who = face_owner[flat[pix]]
    xs, ys = pix % width, torch.div(pix, width, rounding_mode="floor")
    big = torch.iinfo(torch.int64).max
    lo_x = torch.full((n,), big).scatter_reduce(0, who, xs, "amin")
    lo_y = torch.full((n,), big).scatter_reduce(0, who, ys, "amin")
    hi_x = torch.full((n,), -1).scatter_reduce(0, who, xs, "amax")
    hi_y = torch.full((n,), -1).scatter_reduce(0, who, ys, "amax")
    area = torch.bincount(who, minlength=n)
    box = torch.stack([lo_x, lo_y, hi_x + 1 - lo_x, hi_y + 1 - lo_y], dim=1).double()
    fx0 = fallback_uv[..., 0].amin(1).clamp(0, width)
    fy0 = fallback_uv[..., 1].amin(1).clamp(0, height)
    fx1 = fallback_uv[..., 0].amax(1).clamp(0, width)
    fy1 = fallback_uv[..., 1].amax(1).clamp(0, height)
    fallback = torch.stack([fx0, fy0, fx1 - fx0, fy1 - fy0], dim=1).double()
    box = torch.where((area > 0)[:, None], box, fallback)
    return box, area
