"""CliffNet: shapes, mean-parameter start, weight loading, AMP. Tiny crops, resnet18, CPU."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision

from annotator.config import NetworkConfig
from annotator.model.cliff import MEAN_CAM_SCALE, CliffNet, WeightsError, load_weights, mean_parameters

CROP = 64


pytestmark = pytest.mark.usefixtures("single_thread")


def _net(seed: int = 0, **cfg) -> CliffNet:
    torch.manual_seed(seed)
    return CliffNet(NetworkConfig(**cfg), CROP).eval()


def _inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, CROP, CROP, generator=gen), torch.randn(batch, 3, generator=gen) * 0.3


def _assert_rotations(rotmat: torch.Tensor, atol: float = 1e-5) -> None:
    eye = torch.eye(3).expand_as(rotmat)
    assert torch.allclose(rotmat.transpose(-1, -2) @ rotmat, eye, atol=atol)
    assert torch.allclose(torch.linalg.det(rotmat), torch.ones(rotmat.shape[:-2]), atol=atol)


@pytest.mark.parametrize("use_bbox_info", [True, False])
def test_output_shapes_and_valid_rotations(use_bbox_info):
    net = _net(use_bbox_info=use_bbox_info)
    img, info = _inputs(batch=3)
    out = net(img, info if use_bbox_info else None)
    assert out["rotmat"].shape == (3, 24, 3, 3)
    assert out["pose_6d"].shape == (3, 144)
    assert out["betas"].shape == (3, 10)
    assert out["crop_cam"].shape == (3, 3)
    assert all(v.dtype == torch.float32 for v in out.values())
    _assert_rotations(out["rotmat"])
    expected_in = 512 + (3 if use_bbox_info else 0) + 144 + 10 + 3
    assert net.fc1.in_features == expected_in


def test_bbox_info_is_used_and_required():
    net = _net()
    img, info = _inputs()
    with pytest.raises(ValueError, match="bbox_info"):
        net(img)
    with pytest.raises(ValueError, match=r"bbox_info must be \(2, 3\)"):
        net(img, info[:, :2])
    a, b = net(img, info), net(img, info + 1.0)
    assert not torch.allclose(a["crop_cam"], b["crop_cam"])


def test_mean_parameters_are_upright_identity_pose():
    mean = mean_parameters(num_betas=10)
    from annotator.geometry.rotations import rot6d_to_matrix

    rot = rot6d_to_matrix(mean["pose_6d"].reshape(24, 6))
    assert torch.allclose(rot[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)  # 180 deg about x
    assert torch.allclose(rot[1:], torch.eye(3).expand(23, 3, 3), atol=1e-6)
    assert torch.equal(mean["betas"], torch.zeros(1, 10))
    assert torch.allclose(mean["crop_cam"], torch.tensor([[MEAN_CAM_SCALE, 0.0, 0.0]]))


def test_fresh_network_starts_near_the_mean():
    """Small output init (OUTPUT_INIT_GAIN): the first prediction is close to the mean parameters."""
    net = _net()
    with torch.no_grad():
        out = net(*_inputs())
    mean = mean_parameters(10)
    root_angle = torch.acos(((out["rotmat"][:, 0] * torch.diag(torch.tensor([1.0, -1.0, -1.0]))).sum((-1, -2)) - 1) / 2)
    assert float(root_angle.max()) < math.radians(10)
    assert float((out["crop_cam"] - mean["crop_cam"]).abs().max()) < 0.1
    assert float(out["betas"].abs().max()) < 0.1


def test_load_torchvision_backbone_state_dict(tmp_path):
    torch.manual_seed(123)
    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(resnet.state_dict(), path)  # includes the ImageNet fc head, which is ignored

    net = _net(weights=str(path))
    for name, value in resnet.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(net.backbone.state_dict()[name], value), name


def test_load_full_checkpoint_roundtrip(tmp_path):
    net = _net(seed=5)
    path = tmp_path / "ckpt.pt"
    # Wrapped like a training checkpoint and prefixed like a DDP module.
    torch.save({"model": {f"module.{k}": v for k, v in net.state_dict().items()}, "epoch": 3}, path)
    other = _net(seed=6)
    assert load_weights(other, str(path)) == "full"
    img, info = _inputs()
    assert torch.equal(net(img, info)["rotmat"], other(img, info)["rotmat"])


def test_bad_weights_give_clear_errors(tmp_path):
    deeper = tmp_path / "resnet34.pt"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), deeper)
    with pytest.raises(WeightsError, match=r"resnet34\.pt.*resnet18.*unexpected keys: layer1\.2\."):
        _net(weights=str(deeper))

    no_bbox = tmp_path / "nobbox.pt"
    torch.save(_net(use_bbox_info=False).state_dict(), no_bbox)
    with pytest.raises(WeightsError, match=r"shape mismatch: fc1\.weight \(1024, 669\) != \(1024, 672\)"):
        load_weights(_net(), str(no_bbox))

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt: not a torch weights file"):
        load_weights(_net(), str(junk))
    with pytest.raises(WeightsError, match="missing.pt: network weights file not found"):
        load_weights(_net(), str(tmp_path / "missing.pt"))


def test_bf16_autocast_channels_last_returns_float32_rotations():
    net = _net().to(memory_format=torch.channels_last)
    img, info = _inputs()
    with torch.no_grad():
        reference = net(img, info)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            out = net(img.contiguous(memory_format=torch.channels_last), info)
    assert out["rotmat"].dtype == torch.float32
    assert out["crop_cam"].dtype == torch.float32
    _assert_rotations(out["rotmat"])
    # bf16 has ~3 significant digits; the result must still be the same network's answer.
    assert float((out["crop_cam"] - reference["crop_cam"]).abs().max()) < 0.05


def test_the_aux_set_annotator_reads_root_relative_3d_joints_and_saves_them_in_its_checkpoint(tmp_path):
    """NeuralAnnot Sec. 3.1: two FC layers turn the 3D joints into a 512-d feature beside the image's."""
    from annotator.body.joints import get_convention
    from annotator.model.cliff import JOINTS_FEATURE_DIM, checkpoint_joints_in, net_inputs

    root = get_convention("coco17").root
    torch.manual_seed(0)
    net = CliffNet(NetworkConfig(), CROP, joints_in=17, joints_root=root).eval()
    assert net.fc1.in_features == 512 + 3 + 144 + 10 + 3 + JOINTS_FEATURE_DIM
    img, info = _inputs()
    gen = torch.Generator().manual_seed(2)
    joints = torch.cat([torch.randn(2, 17, 3, generator=gen) * 0.3, torch.ones(2, 17, 1)], -1)
    batch = {"img": img, "bbox_info": info, "joints_3d": joints}
    assert set(net_inputs(batch, net)) == {"img", "bbox_info", "joints_3d"}
    assert set(net_inputs(batch, _net())) == {"img", "bbox_info"}  # an image-only network is never given them
    with pytest.raises(ValueError, match="joints_3d"):
        net(img, info)
    out = net(**net_inputs(batch, net))
    # root-relative: moving the whole person changes nothing; moving one joint changes the answer
    moved = joints.clone()
    moved[..., :3] += torch.tensor([0.5, -0.2, 3.0])
    same = net(img, info, joints_3d=moved)
    torch.testing.assert_close(same["pose_6d"], out["pose_6d"])
    bent = joints.clone()
    bent[:, 9, :3] += 0.3  # a wrist
    assert not torch.allclose(net(img, info, joints_3d=bent)["pose_6d"], out["pose_6d"])
    absent = joints.clone()
    absent[:, 9] = torch.tensor([5.0, 5.0, 5.0, 0.0])  # confidence 0: the joint is absent, its numbers unread
    missing = joints.clone()
    missing[:, 9] = torch.tensor([-7.0, 1.0, 2.0, 0.0])
    torch.testing.assert_close(net(img, info, joints_3d=absent)["pose_6d"], net(img, info, joints_3d=missing)["pose_6d"])

    path = tmp_path / "model.pt"
    torch.save({"model": net.state_dict()}, path)
    assert checkpoint_joints_in(str(path)) == 17
    torch.save({"model": _net().state_dict()}, tmp_path / "plain.pt")
    assert checkpoint_joints_in(str(tmp_path / "plain.pt")) == 0
    with pytest.raises(WeightsError, match="unexpected keys: joints"):  # never silently dropped
        load_weights(_net(), str(path))


def test_load_network_reads_the_checkpoint_once_and_takes_its_joints_input_from_it(tmp_path, monkeypatch):
    from annotator import storage
    from annotator.body.joints import TRAIN_CONVENTION, get_convention
    from annotator.config import parse_job
    from annotator.steps.runtime import load_network

    cfg = parse_job({"name": "t", "crop": {"size": CROP},
                     "datasets": [{"name": "w", "format": "coco", "role": "target", "path": "a.json"}]})
    torch.manual_seed(0)
    saved = CliffNet(cfg.network, CROP, joints_in=17, joints_root=get_convention(TRAIN_CONVENTION).root).eval()
    path = str(tmp_path / "model.pt")
    torch.save({"model": saved.state_dict()}, path)
    reads = []
    real = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda p, *a, **k: reads.append(p) or real(p, *a, **k))
    net = load_network(cfg, path, torch.device("cpu")).eval()
    assert reads == [path] and net.joints_in == 17
    img, info = _inputs()
    joints = torch.cat([torch.randn(2, 17, 3, generator=torch.Generator().manual_seed(4)) * 0.3, torch.ones(2, 17, 1)], -1)
    torch.testing.assert_close(net(img, info, joints_3d=joints)["pose_6d"], saved(img, info, joints_3d=joints)["pose_6d"])


def test_an_attached_ik_network_is_the_aux_annotators_frozen_starting_point_and_travels_in_its_checkpoint(tmp_path):
    from annotator.body.joints import get_convention
    from annotator.model.ik import IKNet

    root = get_convention("coco17").root
    torch.manual_seed(0)
    ik = IKNet(17, list(root))
    with pytest.raises(ValueError, match="joints_in"):
        _net().attach_ik(ik)
    net = CliffNet(NetworkConfig(), CROP, joints_in=17, joints_root=root)
    net.attach_ik(ik)
    net.train()
    assert not ik.training and not any(p.requires_grad for p in ik.parameters())
    img, info = _inputs()
    joints = torch.cat([torch.randn(2, 17, 3, generator=torch.Generator().manual_seed(3)) * 0.3, torch.ones(2, 17, 1)], -1)
    net.eval()
    out = net(img, info, joints_3d=joints)
    start = ik(joints[..., :3], torch.ones(2, 17))
    # the regressor's few IEF steps (output layers at 1% gain) stay next to the IK answer
    assert (out["rotmat"] - start["rotmat"]).abs().max() < 0.1
    mean_start = CliffNet(NetworkConfig(), CROP, joints_in=17, joints_root=root).eval()
    mean_start.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("ik.")})
    assert (mean_start(img, info, joints_3d=joints)["rotmat"] - start["rotmat"]).abs().max() > 0.3
    path = tmp_path / "model.pt"
    torch.save({"model": net.state_dict()}, path)
    again = CliffNet(NetworkConfig(), CROP, joints_in=17, joints_root=root).eval()
    assert load_weights(again, str(path)) == "full" and again.ik is not None
    torch.testing.assert_close(again(img, info, joints_3d=joints)["rotmat"], out["rotmat"])
