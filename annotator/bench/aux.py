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

Errors in mm: MPJPE (root-aligned, the convention's hips), PA-MPJPE and PVE (root-aligned
meshes). NeuralAnnot's image + joints network (``neuralannot-aux``) is not built yet.
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
    truth = lab_people(s.seed, s.images)
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
    mean_pose = {"global_orient": truth["global_orient"], "body_pose": poses.mean(0, keepdim=True).expand(n, -1),
                 "betas": torch.zeros(n, body.num_betas)}
    baseline = _score(body, mean_pose, truth)
    for m in methods.values():
        m["skill"] = 1 - m["pa_mpjpe"] / baseline["pa_mpjpe"]
    return {"settings": asdict(s), "people": n, "convention": CONVENTION, "train_seconds": train_s,
            "methods": methods, "baseline": baseline, "history": history,
            "not_built": ["neuralannot-aux"]}


def format_table(result: dict) -> str:
    rows = [("method", "MPJPE", "PA-MPJPE", "PVE", "skill")]
    for name, m in result["methods"].items():
        rows.append((name, f"{m['mpjpe']:.1f}", f"{m['pa_mpjpe']:.1f}", f"{m['pve']:.1f}", f"{m['skill']:+.2f}"))
    b = result["baseline"]
    rows.append(("baseline-mean-pose", f"{b['mpjpe']:.1f}", f"{b['pa_mpjpe']:.1f}", f"{b['pve']:.1f}", "0"))
    return "\n".join("  ".join(f"{c:>18}" if i == 0 else f"{c:>9}" for i, c in enumerate(r)) for r in rows)
