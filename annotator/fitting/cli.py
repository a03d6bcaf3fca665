"""``annotator ik``: 3D joints -> SMPL parameters with the IK network (:mod:`annotator.fitting.ik`).

    annotator ik JOINTS_FILE --out SMPL.parquet [--checkpoint IK.pt | --save-checkpoint IK.pt]

``JOINTS_FILE``: a SPIN-style npz with ``S`` ``(N, K, 3|4)`` (4th column: confidence; SPIN's
24-joint order unless the file has ``joints_3d_convention``), or a Parquet table with
``joints_3d`` (flattened K*3, metres), ``joints_3d_convention`` and ``sample_id`` (a manifest).
The output keeps the input's image columns (:data:`IMAGE_COLUMNS`: image path, bbox, image size,
camera, where the file has them; an npz's ``imgname`` as ``image_path``).
Without ``--checkpoint`` an IK network is trained first on the synthetic world's mocap poses
(``--poses``, ``--steps``) and can be kept with ``--save-checkpoint``. Checkpoints are read
without unpickling.
"""
from __future__ import annotations

import argparse
import io
import logging

import numpy as np

log = logging.getLogger("annotator")

IK_METHOD = "ik"
"""The ``method`` of the rows this command writes."""
IMAGE_COLUMNS = ("dataset", "image_path", "source", "bbox", "image_width", "image_height", "focal_length",
                 "principal_point")
"""Columns of the pseudo-GT schema a Parquet joints file (a manifest) passes through to the output, where it has them."""


def read_joints(path: str, convention: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``(ids, joints (N, K, 3), present (N, K), convention)`` of a joints file (see the module
    docstring); a wrong file is a ValueError naming it and the key."""
    from annotator import storage
    from annotator.body.joints import CONVENTIONS

    raw = storage.read_bytes(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(io.BytesIO(raw))
        missing = [c for c in ("joints_3d", "joints_3d_convention") if c not in t.column_names]
        if missing:
            raise ValueError(f"{storage.redact(path)}: missing column(s) {missing}")
        valid = np.asarray(t["joints_3d"].is_valid())
        conv = sorted(set(t["joints_3d_convention"].filter(t["joints_3d"].is_valid()).to_pylist()))
        if len(conv) != 1:
            raise ValueError(f"{storage.redact(path)}: joints_3d_convention must be one convention, got {conv}")
        conv = convention or conv[0]
        k = CONVENTIONS[conv].num_joints
        t = t.filter(t["joints_3d"].is_valid()) if not valid.all() else t
        joints = np.stack(t["joints_3d"].to_numpy(zero_copy_only=False)).astype(np.float32)
        if joints.shape[1] != 3 * k:
            raise ValueError(f"{storage.redact(path)}: joints_3d has {joints.shape[1]} values, {conv} needs {3 * k}")
        ids = np.asarray(t["sample_id"].to_pylist() if "sample_id" in t.column_names else range(t.num_rows), str)
        joints = joints.reshape(-1, k, 3)
        return ids, joints, np.isfinite(joints).all(-1), conv
    from annotator.data.adapters.spin_npz import SPIN24_TO_H36M17

    data = dict(np.load(io.BytesIO(raw), allow_pickle=False))
    if "S" not in data:
        raise ValueError(f"{storage.redact(path)}: no key 'S' (3D joints)")
    s = np.asarray(data["S"], np.float32)
    if s.ndim != 3 or s.shape[2] not in (3, 4):
        raise ValueError(f"{storage.redact(path)}: key 'S' must be (N, K, 3) or (N, K, 4), got {s.shape}")
    conv = convention or (str(data["joints_3d_convention"]) if "joints_3d_convention" in data else None)
    if conv is None:
        s, conv = s[:, SPIN24_TO_H36M17], "h36m17"
    if s.shape[1] != CONVENTIONS[conv].num_joints:
        raise ValueError(f"{storage.redact(path)}: 'S' has {s.shape[1]} joints, {conv} has {CONVENTIONS[conv].num_joints}")
    present = (s[..., 3] > 0) if s.shape[2] == 4 else np.ones(s.shape[:2], bool)
    ids = np.asarray(data["imgname"]).astype(str) if "imgname" in data else np.arange(len(s)).astype(str)
    return ids, s[..., :3], present & np.isfinite(s[..., :3]).all(-1), conv


def image_columns(path: str) -> dict:
    """The :data:`IMAGE_COLUMNS` of a joints file's rows that :func:`read_joints` keeps (pyarrow arrays):
    a Parquet file's own columns; an npz's ``imgname`` as ``image_path``."""
    from annotator import storage

    raw = storage.read_bytes(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(io.BytesIO(raw))
        t = t.filter(t["joints_3d"].is_valid())
        return {c: t[c].combine_chunks() for c in IMAGE_COLUMNS if c in t.column_names}
    import pyarrow as pa

    data = np.load(io.BytesIO(raw), allow_pickle=False)
    return {"image_path": pa.array(np.asarray(data["imgname"]).astype(str))} if "imgname" in data else {}


def load_ik(path: str):
    """An IK network saved by ``annotator ik --save-checkpoint`` (read without unpickling)."""
    from annotator import storage
    from annotator.model.ik import IKNet
    from annotator.steps.runtime import load_torch

    obj = load_torch(path)
    if not isinstance(obj, dict) or "stem.0.weight" not in obj.get("model", {}):
        raise ValueError(f"{storage.redact(path)}: not an IK network file (a dict with its state dict under 'model')")
    num_joints, root, num_betas = IKNet.shape_of(obj["model"])
    net = IKNet(num_joints, root, num_betas)
    net.load_state_dict(obj["model"], strict=True)
    return net.eval(), str(obj["convention"])


def mocap_poses(count: int, seed: int) -> np.ndarray:
    """``(count, 69)`` body poses of the synthetic world's mocap set (its AMASS)."""
    from annotator.data.synth.poses import sample_poses

    return np.asarray(sample_poses(np.random.default_rng(seed), count).body_pose, np.float32).reshape(count, -1)[:, :69]


def _ik(args: argparse.Namespace) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from annotator import storage
    from annotator.body import load_body_model
    from annotator.config import BodyModelConfig
    from annotator.fitting.ik import IKTraining, ik_fit, train_ik
    from annotator.steps.runtime import save_torch

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ids, joints, present, conv = read_joints(args.joints_file, args.convention)
    body = load_body_model(BodyModelConfig(kind=args.kind, path=args.path))
    if args.checkpoint:
        net, net_conv = load_ik(args.checkpoint)
        if net_conv != conv:
            raise SystemExit(f"{args.checkpoint}: IK network for {net_conv!r}, the file's joints are {conv!r}")
    else:
        poses = torch.from_numpy(mocap_poses(args.poses, args.seed))
        settings = IKTraining(seed=args.seed, **({"steps": args.steps} if args.steps else {}))
        net, history = train_ik(body, conv, poses, settings, log=lambda step, m: log.info(
            "[ik] step %d: loss %.4f, joints %.1f mm (%.0fs)", step, m["loss"], 1000 * m["joints"], m["seconds"]))
        if args.save_checkpoint:
            save_torch({"model": net.state_dict(), "convention": conv, "poses": args.poses, "history": history},
                       args.save_checkpoint)
    fit = ik_fit(net, body, conv, torch.from_numpy(joints), torch.from_numpy(present))
    f32 = lambda x: pa.array(list(x.numpy().astype(np.float32)), pa.list_(pa.float32(), x.shape[1]))  # noqa: E731
    table = pa.table({
        "sample_id": pa.array(ids, pa.string()),
        **image_columns(args.joints_file),  # where the people are in their images, when the file says
        "global_orient": f32(fit["global_orient"]), "body_pose": f32(fit["body_pose"]),
        "betas": f32(fit["betas"]), "transl": f32(fit["transl"]),
        "joint_err_mm": pa.array((fit["joint_err"] * 1000).numpy().astype(np.float32)),
        "joints_3d_convention": pa.array([conv] * len(ids), pa.string()),
        "method": pa.array([IK_METHOD] * len(ids), pa.string()),
        "body_model_id": pa.array([body.model_id] * len(ids), pa.string()),
        "body_model_checksum": pa.array([body.checksum] * len(ids), pa.string()),
    })
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes_atomic(args.out, buf.getvalue())
    log.info("[ik] %d people -> %s (mean joint error %.1f mm)", len(ids), storage.redact(args.out),
             float(fit["joint_err"].mean()) * 1000)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("ik", help="3D joints -> SMPL parameters with the IK network (Best of both worlds' GIK-Net)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("joints_file", help="npz with 'S' or Parquet with joints_3d (local or s3://)")
    p.add_argument("--out", required=True, help="Parquet of SMPL parameters in the joints' frame")
    p.add_argument("--convention", help="joint convention of the file (default: from the file)")
    p.add_argument("--checkpoint", help="an IK network saved with --save-checkpoint")
    p.add_argument("--save-checkpoint", help="keep the network trained by this run here")
    p.add_argument("--poses", type=int, default=20000, help="synthetic mocap poses to train on")
    p.add_argument("--steps", type=int, help="training steps (default: IKTraining.steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kind", choices=["open", "smpl"], default="open", help="body model kind")
    p.add_argument("--path", help="body model file (kind smpl)")
    p.set_defaults(func=_ik)


__all__ = ["read_joints", "image_columns", "IMAGE_COLUMNS", "load_ik", "mocap_poses", "add_commands", "IK_METHOD"]
