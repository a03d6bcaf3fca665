"""Generate a synthetic dataset: plan -> pose (body model) -> render -> write real formats.

Output layout under ``out``:

* ``images/<domain>_<index>.jpg``;
* ``wild``: ``annotations/person_keypoints.json`` (COCO keypoints, 2D only);
* ``lab``/``wild3d``: ``annotations/<domain>.npz`` (SPIN-style, with 3D truth);
* ``ground_truth.parquet``: per annotation (COCO: annotation id; npz: row index) the
  SMPL parameters in the camera frame, camera, 3D joints and projected 2D keypoints -
  for evaluation only, the pipeline never reads it;
* ``synth.json``: summary (counts, archetypes, body model id) without timestamps.

Ground-truth columns (camera frame = OpenCV: x right, y down, z forward, metres):
``annotation_id``, ``image_id``, ``file_name``, ``person_index``, ``domain``, ``seed``,
``archetype``, ``camera_id`` (lab camera, else -1), ``global_orient`` (3),
``body_pose`` (69), ``betas`` (10), ``transl`` (3) - exactly what the body model was run
with -, ``focal_length``, ``principal_point`` (2), ``image_width``, ``image_height``,
``joints_3d`` (17 * 3, coco17, ``joints_3d_convention``), ``keypoints_2d`` (17 * 2, their
projections before any visibility), ``visibility`` (17, COCO 0/1/2), ``bbox`` (4),
``body_model_id``, ``body_model_checksum``. Vertices are not stored (re-run the model).

Images are independent (each has its own seeded stream), and are processed in chunks
so that one body-model forward serves many people.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from scipy.spatial.transform import Rotation

import annotator
from annotator import storage
from annotator.body.joints import COCO17_NAMES, COCO17_OKS_SIGMAS, SMPL_JOINT_NAMES, TRAIN_CONVENTION, select_keypoints
from annotator.config import BodyModelConfig, DatasetConfig, SynthConfig
from annotator.data.synth import scene, writers
from annotator.render.raster import vertex_normals
from annotator.threads import torch_threads

CHUNK_IMAGES = 16
"""Images planned and posed together (one body-model forward per chunk)."""
GT_FILE = "ground_truth.parquet"
SUMMARY_FILE = "synth.json"
IMAGES_DIR = "images"
KEEP_INSIDE_PX = 1e-3
"""Noisy labels are clipped this far inside the image's right/bottom edge (COCO labels lie in it)."""
NOISE_STREAM = 7_919
"""Seeds the labelling-noise generator apart from the scene's own streams, so the amount of
noise never changes what is rendered."""


def annotation_relpath(domain: str) -> str:
    """The annotation file of ``domain``, relative to the dataset directory."""
    return "annotations/person_keypoints.json" if domain == "wild" else f"annotations/{domain}.npz"


def annotation_path(out: str, domain: str) -> str:
    """The annotation file the pipeline reads for ``domain`` under ``out``."""
    return storage.join(out, annotation_relpath(domain))


def dataset_config(out: str, domain: str, name: str, role: str) -> DatasetConfig:
    """A :class:`DatasetConfig` that reads a generated dataset with the real adapters."""
    fmt = "coco" if domain == "wild" else "spin_npz"
    return DatasetConfig(name=name, format=fmt, role=role, path=annotation_path(out, domain),
                         images=storage.join(out, IMAGES_DIR))


def build_assets(model) -> scene.MeshAssets:
    rest = model.rest_output()
    return scene.mesh_assets(model.faces, model.skinning_weights.detach(), rest.vertices[0].detach(),
                             rest.joints[0].detach(), SMPL_JOINT_NAMES.index("head"))


@dataclass
class Posed:
    """Camera-frame result of posing every person of a chunk (P people)."""

    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    vertices: torch.Tensor
    keypoints: torch.Tensor
    """(P, 17, 3) coco17 camera-frame keypoints."""


def pose_people(model, plans: list[scene.ImagePlan]) -> Posed:
    """Run the body model for all people of ``plans`` and place them in their cameras."""
    people = [p for plan in plans for p in plan.people]
    owner = np.array([i for i, plan in enumerate(plans) for _ in plan.people], dtype=np.int64)
    rot_cw = np.stack([plans[i].rot_cw for i in owner])
    rot_w = np.stack([p.rot_world for p in people])
    go = Rotation.from_matrix(rot_cw @ rot_w).as_rotvec().astype(np.float32)
    body_pose = np.stack([p.body_pose for p in people]).astype(np.float32)
    betas = np.stack([p.betas for p in people]).astype(np.float32)
    t = torch.from_numpy
    with torch.no_grad():
        rest = model(t(go), t(body_pose), t(betas), torch.zeros(len(people), 3))
    pelvis = rest.joints[:, 0].double().numpy()
    placement = np.stack([p.placement for p in people])
    floor = np.array([plans[i].placement == "floor" for i in owner], dtype=bool)
    target = np.zeros_like(pelvis)
    # screen placement: pelvis on the ray through pixel (u, v) at the given depth
    focal = np.array([plans[i].focal for i in owner])
    pp = np.stack([plans[i].principal_point for i in owner])
    ray = np.concatenate([(placement[:, :2] - pp) / focal[:, None], np.ones((len(people), 1))], axis=1)
    target[~floor] = (ray * placement[:, 2:3])[~floor]
    if floor.any():
        # feet on the floor: the lowest vertex along the world up axis touches y = 0
        up_cam = torch.from_numpy(rot_cw[:, :, 1]).float()
        height = ((rest.vertices - rest.joints[:, :1]) * up_cam[:, None]).sum(-1).amin(1).double().numpy()
        eye = np.stack([plans[i].cam_centre for i in owner])
        world = np.stack([placement[:, 0], -height, placement[:, 1]], axis=1)
        target[floor] = np.einsum("nij,nj->ni", rot_cw, world - eye)[floor]
    transl = (target - pelvis).astype(np.float32)
    with torch.no_grad():
        out = model(t(go), t(body_pose), t(betas), t(transl))
    kps = select_keypoints(out.keypoints, model.keypoint_names, TRAIN_CONVENTION)
    return Posed(global_orient=go, body_pose=body_pose, betas=betas, transl=transl,
                 vertices=out.vertices, keypoints=kps)


@dataclass
class _Collected:
    images: list[dict] = field(default_factory=list)
    annotations: list[dict] = field(default_factory=list)
    gt: dict[str, list] = field(default_factory=lambda: collections.defaultdict(list))
    archetypes: collections.Counter = field(default_factory=collections.Counter)
    visibility: collections.Counter = field(default_factory=collections.Counter)


@dataclass
class ImageResult:
    """One rendered image and the 2D annotation of its people (camera-frame truth in :class:`Posed`)."""

    image: np.ndarray
    """(H, W, 3) uint8."""
    first: int
    """Index of the image's first person in the chunk's :class:`Posed` arrays."""
    keypoints_3d: torch.Tensor
    """(n, 17, 3) float64 coco17 camera-frame keypoints."""
    uv: torch.Tensor
    """(n, 17, 2) their projections (px), before any visibility."""
    visibility: torch.Tensor
    """(n, 17) COCO flags: 0 outside the image, 1 occluded, 2 visible."""
    boxes: torch.Tensor
    """(n, 4) [x, y, w, h] of the visible silhouette."""
    areas: torch.Tensor
    """(n,) visible pixels."""


def render_chunk(model, assets: scene.MeshAssets, own_parts: torch.Tensor, plans: list[scene.ImagePlan],
                 spec: scene.DomainSpec, timings: dict[str, float] | None = None) -> tuple[Posed, list[ImageResult]]:
    """Pose every person of ``plans`` with one body-model call, then render each image."""
    timings = {} if timings is None else timings

    def tick(stage: str, start: float) -> float:
        now = time.perf_counter()
        timings[stage] = timings.get(stage, 0.0) + now - start
        return now

    t0 = time.perf_counter()
    posed = pose_people(model, plans)
    normals = vertex_normals(posed.vertices, assets.faces)
    colours = np.stack([p.colours for plan in plans for p in plan.people]).astype(np.float32)
    vcol = torch.from_numpy(colours)[:, assets.vertex_part]
    t0 = tick("body_model", t0)
    results, first = [], 0
    for plan in plans:  # per image: background, raster, visibility
        n = len(plan.people)
        sl = slice(first, first + n)
        background = scene.make_background(plan, spec)
        t0 = tick("background", t0)
        rendered = scene.render_image(plan, background, posed.vertices[sl], normals[sl], vcol[sl], assets)
        t0 = tick("render", t0)
        kp3d = posed.keypoints[sl].double()
        uv = scene.project(kp3d, plan)
        vis = scene.keypoint_visibility(uv, kp3d[..., 2], torch.arange(n), rendered.fragments,
                                        rendered.face_owner, assets.face_part, own_parts, plan.width, plan.height)
        boxes, areas = scene.person_boxes(rendered.fragments, rendered.face_owner, n,
                                          scene.project(posed.vertices[sl].double(), plan), plan.width, plan.height)
        t0 = tick("visibility", t0)
        results.append(ImageResult(rendered.image, first, kp3d, uv, vis, boxes, areas))
        first += n
    return posed, results


@dataclass(frozen=True)
class SynthResult:
    """Where a generated dataset lies (paths local or ``s3://``) and its summary."""

    out_dir: str
    annotations: str
    """The annotation file in its real format (COCO JSON for ``wild``, SPIN npz otherwise)."""
    images: str
    """Image root the annotation's file names are relative to."""
    ground_truth: str
    """``ground_truth.parquet`` (evaluation only)."""
    summary: dict[str, Any]
    """Contents of ``synth.json``."""

    @property
    def format(self) -> str:
        """The :class:`DatasetConfig` format that reads :attr:`annotations`."""
        return "coco" if self.annotations.endswith(".json") else "spin_npz"


def generate(domain: str, num_images: int, seed: int, out_dir: str, body_cfg: BodyModelConfig | None = None,
             image_size: tuple[int, int] | None = None, *, model=None,
             timings: dict[str, float] | None = None, keypoint_noise: float = 1.0, smpl: bool = True) -> SynthResult:
    """Write a synthetic dataset of ``domain`` under ``out_dir`` (layout: module docstring).

    ``keypoint_noise``: ``wild`` labelling noise in units of COCO's annotator spread
    (:func:`labelled_keypoints`; 0 = exact projections). ``smpl``: False leaves the SMPL
    parameters out of a ``lab``/``wild3d`` npz (a 3D-joints-only set; the truth file keeps them).
    ``body_cfg``: the body model to load (default: the open model); ``model``: an already
    loaded one instead. ``timings``: if given, seconds per stage are accumulated into it.
    The same arguments, body model and library versions give byte-identical files; torch
    runs single-threaded here so the core count does not change them (parallelise over
    datasets/seeds instead).
    """
    from annotator.body import load_body_model

    cfg = SynthConfig(domain=domain, num_images=num_images, seed=seed, image_size=image_size,
                      keypoint_noise=keypoint_noise, smpl=smpl)
    if model is None:
        model = load_body_model(body_cfg or BodyModelConfig())
    # one torch thread: multi-threaded CPU reductions may sum in another order, which would
    # change the last bits of the outputs with the machine's core count
    with torch_threads(1):
        summary = _generate(cfg, out_dir, model, timings)
    return SynthResult(out_dir=out_dir, annotations=annotation_path(out_dir, domain),
                       images=storage.join(out_dir, IMAGES_DIR), ground_truth=storage.join(out_dir, GT_FILE),
                       summary=summary)


def generate_from_config(cfg: SynthConfig, out_dir: str, body_cfg: BodyModelConfig | None = None, *,
                         model=None, timings: dict[str, float] | None = None) -> SynthResult:
    """:func:`generate` for a job's ``datasets[].synth`` block."""
    return generate(cfg.domain, cfg.num_images, cfg.seed, out_dir, body_cfg, cfg.image_size, model=model,
                    timings=timings, keypoint_noise=cfg.keypoint_noise, smpl=cfg.smpl)


def _generate(cfg: SynthConfig, out: str, model, timings: dict[str, float] | None) -> dict[str, Any]:
    spec = scene.DOMAINS[cfg.domain]
    assets = build_assets(model)
    own = torch.from_numpy(scene.own_parts_table(COCO17_NAMES, SMPL_JOINT_NAMES))
    timings = {} if timings is None else timings
    col = _Collected()
    npz_rows: dict[str, list] = collections.defaultdict(list)
    first_id = 1 if cfg.domain == "wild" else 0  # COCO annotation ids are 1-based, npz rows 0-based

    def tick(stage: str, start: float) -> None:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start

    for chunk_start in range(0, cfg.num_images, CHUNK_IMAGES):
        t0 = time.perf_counter()
        indices = range(chunk_start, min(chunk_start + CHUNK_IMAGES, cfg.num_images))
        plans = [scene.plan_image(spec, cfg.seed, i, cfg.image_size) for i in indices]
        tick("plan", t0)
        posed, results = render_chunk(model, assets, own, plans, spec, timings)
        for plan, res in zip(plans, results):
            t0 = time.perf_counter()
            name = f"{cfg.domain}_{plan.index:06d}.jpg"
            writers.write_bytes(storage.join(out, IMAGES_DIR, name), writers.encode_jpeg(res.image))
            tick("encode", t0)
            image_id = plan.index + 1
            col.images.append({"id": image_id, "file_name": name, "width": plan.width, "height": plan.height})
            for k in range(len(plan.people)):
                ann_id = first_id + len(col.gt["annotation_id"])
                _record(col, npz_rows, cfg, plan, k, res.first + k, ann_id, image_id, name, posed,
                        res.uv[k].numpy(), res.visibility[k].numpy(), res.boxes[k].numpy(), int(res.areas[k]),
                        res.keypoints_3d[k].numpy())
    return _write_outputs(cfg, out, model, col, npz_rows)


def _record(col, npz_rows, cfg, plan, k, p, ann_id, image_id, name, posed, uv, vis, box, area, kp3d) -> None:
    person = plan.people[k]
    col.archetypes[person.archetype] += 1
    col.visibility.update({int(v): int((vis == v).sum()) for v in (0, 1, 2)})
    if cfg.domain == "wild":
        labelled = labelled_keypoints(cfg, image_id, k, uv, vis, area, plan.width, plan.height)
        kps = np.concatenate([labelled, vis[:, None]], axis=1)
        kps[vis == 0, :2] = 0.0  # COCO writes unlabelled keypoints as 0, 0, 0
        r = writers.COORD_DECIMALS
        col.annotations.append({
            "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "keypoints": [round(float(x), r) if i % 3 != 2 else int(x) for i, x in enumerate(kps.reshape(-1))],
            "num_keypoints": int((vis > 0).sum()),
            "bbox": [round(float(x), r) for x in box], "area": float(area),
        })
    else:
        side = float(max(box[2], box[3]))
        conf = (vis > 0).astype(np.float64)
        npz_rows["imgname"].append(name)
        npz_rows["center"].append(box[:2] + box[2:] / 2.0)
        npz_rows["scale"].append(side / 200.0)
        npz_rows["part"].append(np.concatenate([uv, conf[:, None]], axis=1))
        npz_rows["S"].append(np.concatenate([kp3d, np.ones((len(kp3d), 1))], axis=1))
        npz_rows["pose"].append(np.concatenate([posed.global_orient[p], posed.body_pose[p]]))
        npz_rows["shape"].append(posed.betas[p])
        npz_rows["has_smpl"].append(1.0)
        npz_rows["transl"].append(posed.transl[p])
        npz_rows["focal_length"].append(plan.focal)
        npz_rows["principal_point"].append(plan.principal_point)
        npz_rows["image_width"].append(plan.width)
        npz_rows["image_height"].append(plan.height)
    gt = col.gt
    gt["annotation_id"].append(ann_id)
    gt["image_id"].append(image_id)
    gt["file_name"].append(name)
    gt["person_index"].append(k)
    gt["archetype"].append(person.archetype)
    gt["camera_id"].append(plan.camera_id)
    gt["global_orient"].append(posed.global_orient[p])
    gt["body_pose"].append(posed.body_pose[p])
    gt["betas"].append(posed.betas[p])
    gt["transl"].append(posed.transl[p])
    gt["focal_length"].append(plan.focal)
    gt["principal_point"].append(plan.principal_point)
    gt["image_width"].append(plan.width)
    gt["image_height"].append(plan.height)
    gt["joints_3d"].append(kp3d.reshape(-1))
    gt["keypoints_2d"].append(uv.reshape(-1))
    gt["visibility"].append(vis)
    gt["bbox"].append(box)


def labelled_keypoints(cfg: SynthConfig, image_id: int, person: int, uv: np.ndarray, vis: np.ndarray, area: float,
                       width: int, height: int) -> np.ndarray:
    """``(17, 2)`` exact projections ``uv`` made to look hand-labelled like COCO.

    COCO measured each keypoint's annotator spread as ``sigma_k * s`` (RMS distance, ``s`` =
    sqrt of the person's area; :data:`~annotator.body.joints.COCO17_OKS_SIGMAS`): each labelled
    keypoint gets isotropic Gaussian noise with that RMS distance times ``cfg.keypoint_noise``
    (per-axis std = RMS / sqrt 2), then is kept inside the image. Unlabelled ones get none."""
    if cfg.keypoint_noise <= 0:
        return uv
    rng = np.random.default_rng((cfg.seed, image_id, person, NOISE_STREAM))
    rms = cfg.keypoint_noise * np.asarray(COCO17_OKS_SIGMAS) * np.sqrt(max(area, 0.0))
    noisy = uv + rng.standard_normal((len(vis), 2)) * (rms / np.sqrt(2.0))[:, None]
    noisy = np.clip(noisy, 0.0, np.array([width, height]) - KEEP_INSIDE_PX)
    return np.where((vis > 0)[:, None], noisy, uv)


def ground_truth_table(gt: dict[str, list], domain: str, seed: int, model_id: str, checksum: str) -> pa.Table:
    """The evaluation-only ground truth (see the module docstring) as an Arrow table."""
    n = len(gt["annotation_id"])
    k = len(COCO17_NAMES)

    def stack(key: str, width: int) -> np.ndarray:
        return np.asarray(gt[key], dtype=np.float64).reshape(n, width)

    return pa.table({
        "annotation_id": pa.array(gt["annotation_id"], pa.int64()),
        "image_id": pa.array(gt["image_id"], pa.int64()),
        "file_name": pa.array(gt["file_name"], pa.string()),
        "person_index": pa.array(gt["person_index"], pa.int32()),
        "domain": pa.array([domain] * n, pa.string()),
        "seed": pa.array([seed] * n, pa.int64()),
        "archetype": pa.array(gt["archetype"], pa.string()),
        "camera_id": pa.array(gt["camera_id"], pa.int32()),
        "global_orient": writers.fixed_list(stack("global_orient", 3), 3),
        "body_pose": writers.fixed_list(stack("body_pose", 69), 69),
        "betas": writers.fixed_list(stack("betas", 10), 10),
        "transl": writers.fixed_list(stack("transl", 3), 3),
        "focal_length": pa.array(np.asarray(gt["focal_length"], np.float64)),
        "principal_point": writers.fixed_list(stack("principal_point", 2), 2),
        "image_width": pa.array(gt["image_width"], pa.int32()),
        "image_height": pa.array(gt["image_height"], pa.int32()),
        "joints_3d": writers.fixed_list(stack("joints_3d", 3 * k), 3 * k),
        "joints_3d_convention": pa.array([TRAIN_CONVENTION] * n, pa.string()),
        "keypoints_2d": writers.fixed_list(stack("keypoints_2d", 2 * k), 2 * k),
        "visibility": writers.fixed_list(np.asarray(gt["visibility"], np.int8).reshape(n, k), k, pa.int8()),
        "bbox": writers.fixed_list(stack("bbox", 4), 4),
        "body_model_id": pa.array([model_id] * n, pa.string()),
        "body_model_checksum": pa.array([checksum] * n, pa.string()),
    })


def _write_outputs(cfg: SynthConfig, out: str, model, col: _Collected, npz_rows: dict[str, list]) -> dict[str, Any]:
    ann = annotation_path(out, cfg.domain)
    if cfg.domain == "wild":
        doc = writers.coco_document(col.images, col.annotations, list(COCO17_NAMES),
                                    f"annotator synthetic world, domain {cfg.domain}, seed {cfg.seed}")
        writers.write_bytes(ann, writers.json_bytes(doc))
    else:
        hidden = {"imgname"} | (set() if cfg.smpl else {"pose", "shape", "has_smpl"})  # smpl: false keeps them in the truth file only
        arrays = {key: np.asarray(val, dtype=np.float64) for key, val in npz_rows.items() if key not in hidden}
        arrays["imgname"] = np.asarray(npz_rows["imgname"], dtype=str)
        arrays["image_width"] = arrays["image_width"].astype(np.int32)
        arrays["image_height"] = arrays["image_height"].astype(np.int32)
        arrays["keypoint_convention"] = np.array(TRAIN_CONVENTION)
        arrays["joints_3d_convention"] = np.array(TRAIN_CONVENTION)
        writers.write_bytes(ann, writers.npz_bytes(arrays))
    table = ground_truth_table(col.gt, cfg.domain, cfg.seed, model.model_id, model.checksum)
    writers.write_bytes(storage.join(out, GT_FILE), writers.parquet_bytes(table))
    sizes = collections.Counter(f"{im['width']}x{im['height']}" for im in col.images)
    summary = {
        "generator": f"annotator {annotator.__version__} synth",
        "config": cfg.model_dump(mode="json"),
        "num_images": len(col.images),
        "num_people": len(col.gt["annotation_id"]),
        "image_sizes": dict(sorted(sizes.items())),
        "archetypes": dict(sorted(col.archetypes.items())),
        "keypoint_visibility": {str(k): col.visibility.get(k, 0) for k in (0, 1, 2)},
        "keypoint_convention": TRAIN_CONVENTION,
        "body_model": {"model_id": model.model_id, "checksum": model.checksum},
        "files": {"annotations": annotation_relpath(cfg.domain), "ground_truth": GT_FILE, "images": IMAGES_DIR},
    }
    storage.write_json_atomic(storage.join(out, SUMMARY_FILE), summary)
    return summary
