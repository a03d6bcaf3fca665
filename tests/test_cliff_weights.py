"""Official CLIFF res50 checkpoints load into CliffNet (issue 13).

CLIFF's forward (models/cliff_res50/cliff.py, published architecture) is written fresh here:
ResNet-50 encoder -> 2048 pooled feature; x = [feature, bbox_info(3), pose(144), shape(10),
cam(3)] -> fc1 1024 -> dropout -> fc2 1024 -> dropout -> decpose/decshape/deccam residuals,
3 iterations from the init_* buffers; SPIN's rot6d_to_rotmat. bbox_info as CLIFF demo.py."""
from __future__ import annotations

import io
import pickle

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F


class ReferenceCliff(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = torchvision.models.resnet50(weights=None)
        self.encoder.fc = nn.Identity()
        npose = 24 * 6
        self.fc1 = nn.Linear(2048 + 3 + npose + 13, 1024)
        self.drop1 = nn.Dropout()
        self.fc2 = nn.Linear(1024, 1024)
        self.drop2 = nn.Dropout()
        self.decpose = nn.Linear(1024, npose)
        self.decshape = nn.Linear(1024, 10)
        self.deccam = nn.Linear(1024, 3)
        g = torch.Generator().manual_seed(1)
        self.register_buffer("init_pose", torch.randn(1, npose, generator=g))
        self.register_buffer("init_shape", torch.randn(1, 10, generator=g))
        self.register_buffer("init_cam", torch.tensor([[0.9, 0.0, 0.0]]))
        for layer in (self.decpose, self.decshape, self.deccam):  # non-trivial residuals
            nn.init.normal_(layer.weight, std=0.02)

    @staticmethod
    def rot6d_to_rotmat(x):
        x = x.reshape(-1, 3, 2)
        a1, a2 = x[:, :, 0], x[:, :, 1]
        b1 = F.normalize(a1)
        b2 = F.normalize(a2 - torch.einsum("bi,bi->b", b1, a2).unsqueeze(-1) * b1)
        b3 = torch.cross(b1, b2, dim=1)
        return torch.stack((b1, b2, b3), dim=-1)

    def forward(self, x, bbox, n_iter=3):
        b = x.shape[0]
        xf = self.encoder(x)
        pose, shape, cam = self.init_pose.expand(b, -1), self.init_shape.expand(b, -1), self.init_cam.expand(b, -1)
        for _ in range(n_iter):
            xc = self.drop2(self.fc2(self.drop1(self.fc1(torch.cat([xf, bbox, pose, shape, cam], 1)))))
            pose = self.decpose(xc) + pose
            shape = self.decshape(xc) + shape
            cam = self.deccam(xc) + cam
        return self.rot6d_to_rotmat(pose).view(b, 24, 3, 3), shape, cam


def demo_bbox_info(cx, cy, b, img_w, img_h, focal):
    info = torch.stack([cx - img_w / 2.0, cy - img_h / 2.0, b], dim=-1)
    info[:, :2] = info[:, :2] / focal.unsqueeze(-1) * 2.8
    info[:, 2] = (info[:, 2] - 0.24 * focal) / (0.06 * focal)
    return info


def _save(obj, path):
    buf = io.BytesIO()
    torch.save(obj, buf)
    path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("wrap", ["plain", "model+module"])
def test_cliffnet_with_official_cliff_weights_matches_the_reference(tmp_path, wrap, single_thread):
    from annotator.config import NetworkConfig
    from annotator.geometry.cameras import bbox_info
    from annotator.model import CliffNet

    torch.manual_seed(0)
    ref = ReferenceCliff().eval()
    state = ref.state_dict()
    if wrap != "plain":  # CLIFF's released files: {'model': DDP state dict with 'module.' prefixes}
        state = {"model": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "cliff_res50.pt"
    _save(state, path)

    net = CliffNet(NetworkConfig(backbone="resnet50", weights=str(path), convention="cliff"), 224).eval()
    img = torch.randn(2, 3, 224, 224)
    center, box = torch.tensor([[300.0, 200.0], [120.0, 330.0]]), torch.tensor([180.0, 260.0])
    size, focal = torch.tensor([[640.0, 480.0], [640.0, 480.0]]), torch.tensor([800.0, 800.0])
    with torch.no_grad():
        rot_ref, betas_ref, cam_ref = ref(img, demo_bbox_info(center[:, 0], center[:, 1], box, size[:, 0], size[:, 1], focal))
        out = net(img, bbox_info(center, box, focal, size))  # the pipeline's Eq. 5 input
    torch.testing.assert_close(out["rotmat"], rot_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["betas"], betas_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["crop_cam"], cam_ref, atol=1e-5, rtol=1e-4)


def test_cliff_checkpoint_needs_the_cliff_convention(tmp_path):
    from annotator.config import NetworkConfig
    from annotator.model import CliffNet
    from annotator.model.cliff import WeightsError

    path = tmp_path / "cliff.pt"
    _save(ReferenceCliff().state_dict(), path)
    with pytest.raises(WeightsError, match="network.convention: cliff"):
        CliffNet(NetworkConfig(backbone="resnet50", weights=str(path)), 224)


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_network_weights_that_would_run_code_are_refused(tmp_path):
    from annotator.config import NetworkConfig
    from annotator.model import CliffNet
    from annotator.model.cliff import WeightsError

    path = tmp_path / "evil.pt"
    _save({"model": {"encoder.conv1.weight": torch.zeros(1)}, "x": _Boom()}, path)
    with pytest.raises(WeightsError, match="not a torch weights file"):
        CliffNet(NetworkConfig(backbone="resnet50", weights=str(path), convention="cliff"), 224)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(WeightsError):
        CliffNet(NetworkConfig(weights=str(raw)), 64)
