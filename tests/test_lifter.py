"""The 2D-keypoint lifter: its inputs, its synthetic views, its training, and the CLIFF
network that starts from it (annotator.model.lifter, annotator.fitting.lifter)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from annotator.body.joints import select_keypoints
from annotator.config import JobConfig, NetworkConfig
from annotator.data.synth.poses import sample_poses
from annotator.evaluation.metrics import pa_mpjpe
from annotator.fitting.lifter import pose_keypoints, random_views, train_lifter
from annotator.geometry.rotations import matrix_to_axis_angle
from annotator.model.cliff import CliffNet, WeightsError, load_weights
from annotator.model.lifter import Lifter, lifter_inputs


def _keypoints(n: int, k: int = 17, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(n, k, 3, generator=g) * 300 + 50
    kp[..., 2] = (torch.rand(n, k, generator=g) > 0.2).float()
    return kp


def test_inputs_do_not_depend_on_pixel_units_or_principal_point():
    kp = _keypoints(8)
    focal, pp = torch.full((8,), 500.0), torch.full((8, 2), 160.0)
    base = lifter_inputs(kp, focal, pp)
    scaled = kp.clone()
    scaled[..., :2] = (kp[..., :2] - 160.0) * 3 + 40.0  # 3x the resolution, another principal point
    assert torch.allclose(lifter_inputs(scaled, focal * 3, torch.full((8, 2), 40.0)), base, atol=1e-5)
    # a different focal changes the perspective information (the extent's centre and size)
    assert not torch.allclose(lifter_inputs(kp, focal * 2, pp), base)


def test_unlabelled_keypoints_carry_no_information():
    kp = _keypoints(4)
    moved = kp.clone()
    hidden = kp[..., 2] == 0
    moved[..., :2][hidden] += 1000.0  # where an unlabelled keypoint "is" must not matter
    focal, pp = torch.full((4,), 500.0), torch.zeros(4, 2)
    assert torch.equal(lifter_inputs(moved, focal, pp), lifter_inputs(kp, focal, pp))
    none = kp.clone()
    none[..., 2] = 0
    feats = lifter_inputs(none, focal, pp)
    assert torch.isfinite(feats).all() and feats[:, :17 * 3].abs().sum() == 0


def test_random_views_are_deterministic_and_valid(body_model):
    poses = torch.tensor(sample_poses(np.random.default_rng(0), 64).body_pose, dtype=torch.float32)
    kp3d = pose_keypoints(body_model, "coco17", poses, torch.zeros(64, body_model.num_betas))
    a = random_views(kp3d, poses, torch.Generator().manual_seed(3))
    b = random_views(kp3d, poses, torch.Generator().manual_seed(3))
    assert torch.equal(a.keypoints_2d, b.keypoints_2d) and torch.equal(a.rotmat, b.rotmat)
    assert a.keypoints_2d.shape == (64, 17, 3) and a.rotmat.shape == (64, 24, 3, 3)
    assert ((a.keypoints_2d[..., 2] > 0).sum(1) >= 2).all()
    eye = torch.eye(3).expand(64, 24, 3, 3)
    assert torch.allclose(a.rotmat @ a.rotmat.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.det(a.rotmat), torch.ones(64, 24), atol=1e-5)
    # every view has someone in front of the camera: keypoints within a generous field of view
    assert (a.keypoints_2d[..., :2].abs() / a.focal[:, None, None] < 3).all()


def test_training_learns_the_lifting_of_held_out_views(body_model):
    """A short training lifts held-out views (other poses, other cameras) far better than the
    mean pose does: the PA-MPJPE of its body poses falls well below the constant's."""
    rng = np.random.default_rng(1)
    train_poses = torch.tensor(sample_poses(rng, 2000).body_pose, dtype=torch.float32)
    test_poses = torch.tensor(sample_poses(rng, 200).body_pose, dtype=torch.float32)
    torch.set_num_threads(2)
    net, history = train_lifter(body_model, "coco17", train_poses, steps=400, batch_size=128, lr=1e-3, seed=0,
                                keypoint_weight=1.0, log_every=200)
    assert history["step"] == [200, 400]
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    betas = torch.zeros(200, body_model.num_betas)
    views = random_views(pose_keypoints(body_model, "coco17", test_poses, betas), test_poses,
                         torch.Generator().manual_seed(99))
    with torch.no_grad():
        rot = net(views.keypoints_2d, views.focal, views.principal_point)
        zero = torch.zeros(200, 3)

        def kp(body_pose):
            out = body_model(global_orient=zero, body_pose=body_pose, betas=betas)
            return select_keypoints(out.keypoints, body_model.keypoint_names, "coco17") * 1000

        truth = kp(test_poses)
        lifted = pa_mpjpe(kp(matrix_to_axis_angle(rot[:, 1:]).reshape(200, 69)), truth).mean()
        constant = pa_mpjpe(kp(train_poses.mean(0).expand(200, -1)), truth).mean()
    assert lifted < 0.85 * constant, (float(lifted), float(constant))


def test_training_is_reproducible(body_model):
    """Also: a run of fewer steps than the warm-up needs (5) works."""
    poses = torch.tensor(sample_poses(np.random.default_rng(2), 200).body_pose, dtype=torch.float32)
    a, _ = train_lifter(body_model, "coco17", poses, steps=5, batch_size=16, lr=1e-3, seed=4, keypoint_weight=1.0)
    b, _ = train_lifter(body_model, "coco17", poses, steps=5, batch_size=16, lr=1e-3, seed=4, keypoint_weight=1.0)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def _batch(n: int = 3):
    kp = _keypoints(n)
    return {"img": torch.randn(n, 3, 64, 64), "bbox_info": torch.randn(n, 3) * 0.1, "keypoints_2d": kp,
            "focal": torch.full((n,), 400.0), "principal_point": torch.full((n, 2), 160.0)}


def test_cliff_starts_from_the_lifters_pose():
    torch.manual_seed(0)
    net = CliffNet(NetworkConfig(), 64).eval()
    lifter = Lifter(17)
    net.attach_lifter(lifter)
    for layer in (net.dec_pose, net.dec_betas, net.dec_cam):  # no refinement: the start is the output
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    b = _batch()
    with torch.no_grad():
        out = net(**b)
        want = lifter(b["keypoints_2d"], b["focal"], b["principal_point"])
    assert torch.allclose(out["rotmat"], want, atol=1e-5)
    # the lifter is frozen and stays in eval mode while the network trains
    net.train()
    assert not lifter.training and not any(p.requires_grad for p in lifter.parameters())
    with pytest.raises(ValueError, match="lifter is attached"):
        net(b["img"], b["bbox_info"])


def test_lifter_travels_in_the_network_checkpoint(tmp_path):
    torch.manual_seed(0)
    net = CliffNet(NetworkConfig(), 64)
    net.attach_lifter(Lifter(17))
    path = tmp_path / "model.pt"
    torch.save({"model": net.state_dict()}, path)
    loaded = CliffNet(NetworkConfig(), 64)
    assert load_weights(loaded, str(path)) == "full"
    assert loaded.lifter is not None
    b = _batch()
    net.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.allclose(net(**b)["rotmat"], loaded(**b)["rotmat"])
    # weights of a network without a lifter load into one with a lifter, which keeps its own
    plain = CliffNet(NetworkConfig(), 64)
    torch.save(plain.state_dict(), tmp_path / "plain.pt")
    keep = loaded.lifter.net[0].weight.clone()
    load_weights(loaded, str(tmp_path / "plain.pt"))
    assert torch.equal(loaded.lifter.net[0].weight, keep)


def test_load_lifter_names_a_wrong_file(tmp_path):
    from annotator.steps.prepare import load_lifter

    bad = tmp_path / "not_a_lifter.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, bad)
    with pytest.raises(ValueError, match="not_a_lifter.pt: not a lifter file"):
        load_lifter(str(bad))
    good = tmp_path / "lifter.pt"
    lifter = Lifter(17)
    torch.save({"model": lifter.state_dict(), "convention": "mpii"}, good)
    with pytest.raises(ValueError, match="convention 'mpii'"):
        load_lifter(str(good))
    torch.save({"model": lifter.state_dict(), "convention": "coco17"}, good)
    assert torch.equal(load_lifter(str(good)).net[0].weight, lifter.net[0].weight)


def test_train_lifter_step_is_planned_only_when_enabled():
    from annotator.run import plan_steps

    base = {"name": "j", "datasets": [{"name": "t", "format": "coco", "role": "target", "path": "x.json",
                                       "images": "imgs"}]}
    assert "train-lifter" not in plan_steps(JobConfig.model_validate(base))
    steps = plan_steps(JobConfig.model_validate({**base, "lifter": {"enabled": True}}))
    assert steps.index("train-pose-prior") < steps.index("train-lifter") < steps.index("pretrain")


def test_a_lifter_does_not_change_the_input_check_of_weights(tmp_path):
    """A weights file with lifter keys of another size is refused, naming the file."""
    net = CliffNet(NetworkConfig(), 64)
    other = CliffNet(NetworkConfig(), 64)
    other.attach_lifter(Lifter(12))
    buf = io.BytesIO()
    torch.save(other.state_dict(), buf)
    path = tmp_path / "w.pt"
    path.write_bytes(buf.getvalue())
    net.attach_lifter(Lifter(17))
    with pytest.raises(WeightsError, match="w.pt.*shape mismatch"):
        load_weights(net, str(path))
