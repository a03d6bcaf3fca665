"""The IK network (Best of both worlds' GIK-Net): exact partial skinning, training from poses
alone beats a constant pose on held-out people, and ``annotator ik`` converts joint files."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from annotator.body.joints import get_convention, select_keypoints
from annotator.cli import main
from annotator.fitting.cli import mocap_poses, read_joints
from annotator.fitting.ik import IKTraining, ik_fit, pose_batch, train_ik
from annotator.fitting.keypoints import VertexSubset, convention_keypoints
from annotator.geometry.rotations import axis_angle_to_matrix
from annotator.model.losses import ik_loss

CONV = "h36m17"


def _people(body, n, seed):
    g = torch.Generator().manual_seed(seed)
    go = torch.tensor([[np.pi, 0.0, 0.0]]).repeat(n, 1) + 0.2 * torch.randn(n, 3, generator=g)
    bp = torch.from_numpy(mocap_poses(n, seed + 100))
    betas = torch.randn(n, body.num_betas, generator=g).clamp(-2, 2)
    return {"global_orient": go, "body_pose": bp, "betas": betas}


def test_partial_skinning_equals_the_body_model(body_model):
    g = torch.Generator().manual_seed(0)
    aa, betas = 0.4 * torch.randn(3, 24, 3, generator=g), torch.randn(3, body_model.num_betas, generator=g)
    ids = torch.arange(0, body_model.num_vertices, 16)
    rot = axis_angle_to_matrix(aa)
    verts, joints = VertexSubset(body_model, ids)(rot, betas)
    out = body_model(global_orient=aa[:, 0], body_pose=aa[:, 1:].reshape(3, -1), betas=betas)
    torch.testing.assert_close(verts, out.vertices[:, ids], atol=1e-5, rtol=0)
    torch.testing.assert_close(joints, out.joints, atol=1e-5, rtol=0)
    kp = convention_keypoints(body_model, CONV, device="cpu", dtype=torch.float32)
    a, _ = kp(aa[:, 0], aa[:, 1:].reshape(3, -1), betas, torch.zeros(3, 3))
    b, _ = kp.from_rotmat(rot, betas, torch.zeros(3, 3))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(b, select_keypoints(out.keypoints, body_model.keypoint_names, CONV), atol=1e-5, rtol=0)


def test_ik_loss_terms():
    g = torch.Generator().manual_seed(0)
    r, b, j, v = torch.randn(2, 24, 3, 3, generator=g), torch.randn(2, 10, generator=g), torch.randn(2, 17, 3), torch.randn(2, 5, 3)
    w = {"theta": 1.0, "beta": 0.1, "joints": 1.0, "vertices": 1.0}
    zero = ik_loss(r, r, b, b, j, j, v, v, w)
    assert float(zero["loss"]) == 0.0
    moved = ik_loss(r + 0.5, r, b, b + 2.0, j, j, v, v, w)
    assert float(moved["theta"]) == pytest.approx(0.5) and float(moved["beta"]) == pytest.approx(2.0)
    assert float(moved["loss"]) == pytest.approx(0.5 + 0.1 * 2.0)


def test_trained_on_poses_alone_it_beats_a_constant_pose_on_held_out_people(body_model, single_thread):
    from annotator.evaluation.metrics import pa_mpjpe

    poses = torch.from_numpy(mocap_poses(2000, 0))
    net, history = train_ik(body_model, CONV, poses, IKTraining(steps=300, batch_size=64, log_every=150, seed=0))
    assert history["step"] == [150, 300] and history["loss"][1] < history["loss"][0]
    truth = _people(body_model, 64, seed=7)
    with torch.no_grad():
        out = body_model(**truth)
    joints = select_keypoints(out.keypoints, body_model.keypoint_names, CONV)
    fit = ik_fit(net, body_model, CONV, joints, torch.ones(joints.shape[:2]))
    with torch.no_grad():
        pred = body_model(global_orient=fit["global_orient"], body_pose=fit["body_pose"], betas=fit["betas"],
                          transl=fit["transl"])
    pj = select_keypoints(pred.keypoints, body_model.keypoint_names, CONV)
    const = {**truth, "body_pose": poses.mean(0, keepdim=True).expand(64, -1), "betas": torch.zeros(64, 10)}
    with torch.no_grad():
        cj = select_keypoints(body_model(**const).keypoints, body_model.keypoint_names, CONV)
    ik_err, const_err = float(pa_mpjpe(pj, joints).mean()), float(pa_mpjpe(cj, joints).mean())
    assert ik_err < 0.8 * const_err, (ik_err, const_err)  # measured: 112 vs 170 mm (seed 0)
    # transl puts the model on the joints: the fit's own joint error is what the network left
    torch.testing.assert_close(fit["joint_err"], torch.linalg.norm(pj - joints, dim=-1).mean(1), atol=1e-5, rtol=0)
    # a root-relative pose batch is centred on the convention's root joints
    j, _ = pose_batch(body_model, CONV, axis_angle_to_matrix(truth["global_orient"][:4]), truth["body_pose"][:4],
                      truth["betas"][:4])
    root = list(get_convention(CONV).root)
    assert float(j[:, root].mean(1).abs().max()) < 1e-5


def test_annotator_ik_converts_a_joints_file(body_model, tmp_path, single_thread):
    truth = _people(body_model, 6, seed=3)
    with torch.no_grad():
        out = body_model(**truth, transl=torch.tensor([[0.1, -0.2, 4.0]]).repeat(6, 1))
    s = select_keypoints(out.keypoints, body_model.keypoint_names, "spin24").numpy()
    conf = np.ones((6, 24, 1), np.float32)
    conf[0, 3] = 0  # one missing joint
    npz = tmp_path / "h36m.npz"
    np.savez(npz, S=np.concatenate([s, conf], -1), imgname=np.array([f"img{i}.jpg" for i in range(6)]))
    ids, joints, present, conv = read_joints(str(npz))
    assert conv == CONV and joints.shape == (6, 17, 3) and list(ids) == [f"img{i}.jpg" for i in range(6)]
    ck, first = tmp_path / "ik.pt", tmp_path / "smpl.parquet"
    assert main(["ik", str(npz), "--out", str(first), "--steps", "20", "--poses", "500",
                 "--save-checkpoint", str(ck)]) == 0
    t = pq.read_table(first).to_pandas()
    assert len(t) == 6 and set(t["method"]) == {"ik"} and list(t["sample_id"]) == list(ids)
    assert list(t["image_path"]) == list(ids)  # the npz's imgname
    assert np.stack(t["body_pose"]).shape == (6, 69) and np.isfinite(np.stack(t["transl"])).all()
    # the translation puts the model's hips on the file's: near the true one
    assert np.abs(np.stack(t["transl"])[:, 2] - 4.0).max() < 0.5
    again = tmp_path / "again.parquet"
    assert main(["ik", str(npz), "--out", str(again), "--checkpoint", str(ck)]) == 0
    np.testing.assert_allclose(np.stack(pq.read_table(again).to_pandas()["body_pose"]), np.stack(t["body_pose"]),
                               atol=1e-6)
    # a manifest-like Parquet file: its image columns come through, for the rows that have joints
    import pyarrow as pa

    rows = pa.table({"sample_id": [f"m/{i}" for i in range(3)], "image_path": [f"a/{i}.jpg" for i in range(3)],
                     "bbox": pa.array([[1.0, 2.0, 30.0, 60.0]] * 3, pa.list_(pa.float32(), 4)),
                     "image_width": pa.array([640] * 3, pa.int32()), "image_height": pa.array([480] * 3, pa.int32()),
                     "joints_3d": pa.array([list(joints[0].reshape(-1)), None, list(joints[2].reshape(-1))],
                                           pa.list_(pa.float32())),
                     "joints_3d_convention": [CONV] * 3})
    manifest = tmp_path / "rows.parquet"
    pq.write_table(rows, manifest)
    mout = tmp_path / "m.parquet"
    assert main(["ik", str(manifest), "--out", str(mout), "--checkpoint", str(ck)]) == 0
    m = pq.read_table(mout).to_pandas()
    assert list(m["sample_id"]) == ["m/0", "m/2"] and list(m["image_path"]) == ["a/0.jpg", "a/2.jpg"]
    assert np.stack(m["bbox"]).tolist() == [[1.0, 2.0, 30.0, 60.0]] * 2 and list(m["image_width"]) == [640, 640]
    with pytest.raises(SystemExit, match="IK network for 'h36m17', the file's joints are 'coco17'"):
        bad = tmp_path / "coco.npz"
        np.savez(bad, S=np.zeros((2, 17, 3), np.float32), joints_3d_convention=np.array("coco17"))
        main(["ik", str(bad), "--out", str(tmp_path / "x.parquet"), "--checkpoint", str(ck)])
    nos = tmp_path / "nos.npz"
    np.savez(nos, part=np.zeros((2, 24, 3), np.float32))
    with pytest.raises(ValueError, match=r"nos.npz: no key 'S'"):
        read_joints(str(nos))


def test_ik_fit_places_the_model_on_the_root_joints_of_any_convention(body_model):
    """coco17's root is two joints (the hips), h36m17's one (the pelvis): ``transl`` puts the
    model's root centre on the present root joints, or on all present joints without them."""
    from annotator.model.ik import IKNet

    for conv in ("coco17", "h36m17"):
        c = get_convention(conv)
        net = IKNet(c.num_joints, list(c.root), body_model.num_betas).eval()
        truth = _people(body_model, 3, seed=1)
        with torch.no_grad():
            j = select_keypoints(body_model(**truth, transl=torch.tensor([[0.0, 0.0, 5.0]]).repeat(3, 1)).keypoints,
                                 body_model.keypoint_names, conv)
        present = torch.ones(3, c.num_joints)
        present[2, list(c.root)] = 0  # a row without its root joints
        fit = ik_fit(net, body_model, conv, j, present)
        with torch.no_grad():
            pj = select_keypoints(body_model(global_orient=fit["global_orient"], body_pose=fit["body_pose"],
                                             betas=fit["betas"], transl=fit["transl"]).keypoints,
                                  body_model.keypoint_names, conv)
        root = list(c.root)
        torch.testing.assert_close(pj[:2, root].mean(1), j[:2, root].mean(1), atol=1e-4, rtol=0)
        keep = present[2] > 0
        torch.testing.assert_close(pj[2, keep].mean(0), j[2, keep].mean(0), atol=1e-4, rtol=0)
