"""``annotator bench aux``: SMPL for an aux set that has 3D joints only, against its hidden truth.

The set is the synthetic world's ``lab`` domain (seed ``S``): every person the world plans
(pose, shape, orientation in its camera's frame; no image is rendered), posed by the body model; only its
``h36m17`` joints (the joints a Human3.6M / SPIN npz ``S`` gives) are shown to the methods,
the SMPL parameters stay hidden for scoring. Rows:

* ``ik``: the IK network (:mod:`annotator.fitting.ik`) trained on the world's mocap poses
  (seed ``S + 1``, never the test people), on exact joints;
* ``ik-noisy``: the same network on joints with the corruption it trains with (1 cm noise,
  30% of the joints missing);
* ``baseline-mean-pose``: the mean body pose of the training poses, zero betas and the *true*
  global orientation (the 3D-skill issue's reference).

* ``neuralannot-aux`` (unless ``--no-image``): NeuralAnnot's own aux-set annotator (Sec. 3.1), the
  image + 3D-joints network, run as a job would run it: a local-Ray job whose only dataset is that
  ``lab`` set rendered with ``smpl: false`` (the SMPL stays in the truth file) runs ``manifest`` and
  ``annotate-aux`` with ``aux_annotator.kind: image``; its ``aux_pseudo_gt/lab/`` is scored. The set's
  3D joints are the batch's ``coco17`` (what the synthetic npz ``S`` holds), so
* ``ik-coco17`` is the IK network of those joints (exact), the like-for-like row. With
  ``aux_image.init: ik`` (the default) it is the very network the image annotator starts from (the
  job's ``checkpoints/annotate-aux/ik-coco17.pt``, trained on the same mocap poses as ``ik``): the
  margin between the two rows is what the image and the training on the set add.

With the image job, every row is scored on the job's rows (the rendered set's people, its hidden
truth); without it, on the people the world plans for those images (the same people when the
render rejects none).

Errors in mm: MPJPE (root-aligned, the convention's hips), PA-MPJPE and PVE (root-aligned
meshes).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

CONVENTION = "h36m17"
"""The joints an aux set without SMPL comes with (Human3.6M / SPIN's ``S``)."""
MM = 1000.0


@dataclass(frozen=True)
class AuxSettings:
    seed: int = 0
    images: int = 300
    """``lab`` images (one person each) of the test set."""
    train_poses: int = 20000
    steps: int = 1500
    noise_m: float = 0.01
    drop: float = 0.3
    image: bool = True
    """Also run the ``neuralannot-aux`` job (and the ``ik-coco17`` row)."""
    image_epochs: int = 40
    image_batch: int = 32
    image_lr: float = 1e-4
    """(With the job's 20 warm-up steps.) At 1e-3 the first epoch threw the IK start away: PA-MPJPE
    314 mm after epoch 0, 127 after 9 (seed 0), where 1e-4 went 35 -> 26 mm over 15 epochs."""
    image_init: str = "ik"
    """``aux_image.init`` of the job: ``ik`` or ``mean``."""
    crop_size: int = 64
    cpus_per_worker: int = 2
    work_dir: str | None = None
    """Where the job's run goes (default: a temporary directory, removed afterwards)."""


def lab_people(seed: int, images: int) -> dict[str, torch.Tensor]:
    """Axis-angle ``global_orient`` (in the camera frame of the person's image, where a 3D-joints
    dataset gives its joints), ``body_pose`` and ``betas`` of the people the world's ``lab``
    domain plans for ``images`` images."""
    from annotator.data.synth.scene import DOMAINS, plan_image
    from annotator.geometry.rotations import matrix_to_axis_angle

    plans = [plan_image(DOMAINS["lab"], seed, i) for i in range(images)]
    people = [p for plan in plans for p in plan.people]
    rot = torch.from_numpy(np.stack([plan.rot_cw @ p.rot_world for plan in plans for p in plan.people]).astype(np.float32))
    return {"global_orient": matrix_to_axis_angle(rot),
            "body_pose": torch.from_numpy(np.stack([p.body_pose for p in people]).astype(np.float32)).reshape(len(people), -1)[:, :69],
            "betas": torch.from_numpy(np.stack([p.betas for p in people]).astype(np.float32))}


def image_job(s: AuxSettings, log=print) -> dict:
    """The ``neuralannot-aux`` job (module docstring): its rows' hidden truth, its pseudo-GT in the
    same order, the seconds of step ``annotate-aux`` and its learning curve."""
    import shutil
    import tempfile

    import pyarrow.parquet as pq

    from annotator.config import parse_job
    from annotator.evaluation.reports import ground_truth, pose_tensors
    from annotator.run import run_job

    work = s.work_dir or tempfile.mkdtemp(prefix="annotator-bench-aux-")
    job = {"name": f"aux-seed-{s.seed}", "storage": {"root": work}, "steps": ["manifest", "annotate-aux"],
           "datasets": [{"name": "lab", "format": "synth", "role": "aux3d",
                         "synth": {"domain": "lab", "num_images": s.images, "seed": s.seed, "smpl": False}}],
           "crop": {"size": s.crop_size},
           # the IK start: the bench's IK settings and mocap poses (seed S + 1, never the test people)
           "aux_annotator": {"kind": "image", "steps": s.steps, "mocap_poses": s.train_poses, "seed": s.seed + 1},
           "aux_image": {"epochs": s.image_epochs, "batch_size": s.image_batch, "lr": s.image_lr,
                         "init": s.image_init},
           "ray": {"cpus_per_worker": s.cpus_per_worker}}
    try:
        summary = run_job(parse_job(job, "bench aux").with_absolute_paths())
        aux = summary["annotate-aux"]["outputs"]
        pred = pq.read_table(aux["datasets"]["lab"]["out_dir"]).to_pandas().set_index("sample_id")
        gt = ground_truth("lab", summary["manifest"]["outputs"]["datasets"]["lab"]).loc[pred.index]
        out = {"truth": pose_tensors(gt), "pred": pose_tensors(pred),
               "seconds": summary["annotate-aux"]["seconds"], "curve": aux["curve"], "ik": None}
        if aux.get("ik"):
            from annotator.fitting.cli import load_ik

            out["ik"] = load_ik(aux["ik"]["path"])[0]
        log(f"[bench aux] neuralannot-aux job: {len(pred)} rows in {out['seconds']:.0f}s")
        return out
    finally:
        if s.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def _score(body, params: dict[str, torch.Tensor], truth: dict[str, torch.Tensor]) -> dict[str, float]:
    from annotator.body.joints import get_convention, select_keypoints
    from annotator.evaluation.metrics import mpjpe, pa_mpjpe, pve

    root = list(get_convention(CONVENTION).root)
    with torch.no_grad():
        p, t = (body(global_orient=x["global_orient"], body_pose=x["body_pose"], betas=x["betas"]) for x in (params, truth))
        pj, tj = (select_keypoints(o.keypoints, body.keypoint_names, CONVENTION) for o in (p, t))
    return {"mpjpe": float(mpjpe(pj, tj, root).mean()) * MM, "pa_mpjpe": float(pa_mpjpe(pj, tj).mean()) * MM,
            "pve": float(pve(p.vertices, t.vertices, pj[:, root].mean(1), tj[:, root].mean(1)).mean()) * MM}


def run(s: AuxSettings, body=None, log=print) -> dict:
    from annotator.body import load_body_model
    from annotator.body.joints import get_convention, select_keypoints
    from annotator.config import BodyModelConfig
    from annotator.fitting.cli import mocap_poses
    from annotator.fitting.ik import IKTraining, ik_fit, train_ik

    body = body or load_body_model(BodyModelConfig())
    job = image_job(s, log) if s.image else None
    truth = job["truth"] if job else lab_people(s.seed, s.images)
    n = len(truth["betas"])
    poses = torch.from_numpy(mocap_poses(s.train_poses, s.seed + 1))
    with torch.no_grad():
        o = body(**truth)
    joints = select_keypoints(o.keypoints, body.keypoint_names, CONVENTION)
    k = get_convention(CONVENTION).num_joints
    t0 = time.monotonic()
    net, history = train_ik(body, CONVENTION, poses, IKTraining(steps=s.steps, seed=s.seed, noise_m=s.noise_m,
                                                                drop=s.drop),
                            log=lambda step, m: log(f"[bench aux] ik step {step}: loss {m['loss']:.4f}, "
                                                    f"joints {1000 * m['joints']:.1f} mm ({m['seconds']:.0f}s)"))
    train_s = time.monotonic() - t0
    gen = torch.Generator().manual_seed(s.seed)
    noisy = joints + torch.randn(joints.shape, generator=gen) * s.noise_m
    dropped = (torch.rand(n, k, generator=gen) >= s.drop).float()
    methods = {}
    for name, (j, present) in {"ik": (joints, torch.ones(n, k)), "ik-noisy": (noisy, dropped)}.items():
        t1 = time.monotonic()
        fit = ik_fit(net, body, CONVENTION, j, present)
        methods[name] = {**_score(body, fit, truth), "fit_joint_err_mm": float(fit["joint_err"].mean()) * MM,
                         "seconds": time.monotonic() - t1 + train_s}
    extra = {}
    if job:
        from annotator.body.joints import TRAIN_CONVENTION

        methods["neuralannot-aux"] = {**_score(body, job["pred"], truth), "seconds": job["seconds"]}
        t0 = time.monotonic()
        net_c = job["ik"] or train_ik(
            body, TRAIN_CONVENTION, poses, IKTraining(steps=s.steps, seed=s.seed, noise_m=s.noise_m, drop=s.drop),
            log=lambda step, m: log(f"[bench aux] ik-coco17 step {step}: loss {m['loss']:.4f} ({m['seconds']:.0f}s)"))[0]
        jc = select_keypoints(o.keypoints, body.keypoint_names, TRAIN_CONVENTION)
        fit = ik_fit(net_c, body, TRAIN_CONVENTION, jc, torch.ones(jc.shape[:2]))
        methods["ik-coco17"] = {**_score(body, fit, truth), "fit_joint_err_mm": float(fit["joint_err"].mean()) * MM,
                                "seconds": time.monotonic() - t0}
        extra["neuralannot_aux_curve"] = job["curve"]
    mean_pose = {"global_orient": truth["global_orient"], "body_pose": poses.mean(0, keepdim=True).expand(n, -1),
                 "betas": torch.zeros(n, body.num_betas)}
    baseline = _score(body, mean_pose, truth)
    for m in methods.values():
        m["skill"] = 1 - m["pa_mpjpe"] / baseline["pa_mpjpe"]
    return {"settings": asdict(s), "people": n, "convention": CONVENTION, "train_seconds": train_s,
            "methods": methods, "baseline": baseline, "history": history, **extra}


def format_table(result: dict) -> str:
    rows = [("method", "MPJPE", "PA-MPJPE", "PVE", "skill")]
    for name, m in result["methods"].items():
        rows.append((name, f"{m['mpjpe']:.1f}", f"{m['pa_mpjpe']:.1f}", f"{m['pve']:.1f}", f"{m['skill']:+.2f}"))
    b = result["baseline"]
    rows.append(("baseline-mean-pose", f"{b['mpjpe']:.1f}", f"{b['pa_mpjpe']:.1f}", f"{b['pve']:.1f}", "0"))
    return "\n".join("  ".join(f"{c:>18}" if i == 0 else f"{c:>9}" for i, c in enumerate(r)) for r in rows)
