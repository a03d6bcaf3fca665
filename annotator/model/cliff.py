"""The CLIFF regression network: ResNet features + bbox info -> SMPL rotations, betas, crop camera.

Architecture (CLIFF Fig. 2b, built on HMR/SPIN):

* a torchvision ResNet backbone (classification head removed) encodes the square crop into
  one global-average-pooled feature vector;
* with ``use_bbox_info`` the feature is concatenated with CLIFF's bounding-box information
  ``I_bbox`` (Eq. 5, computed by the data pipeline); without it the network is the HMR-style
  crop-only model (ablation ``cliff-no-bbox``);
* an iterative error-feedback regressor (HMR) starts from mean parameters and refines them
  ``iterations`` times: ``theta <- theta + MLP([feature, bbox, theta])``;
* with ``joints_in = K`` (NeuralAnnot Sec. 3.1, the aux-set annotator ``aux_annotator.kind: image``)
  the row's ground-truth 3D joints (``joints_3d``, the batch's ``TRAIN_CONVENTION``, root-relative
  with presence flags: :func:`annotator.model.ik.ik_inputs`) go through two fully connected layers
  to a :data:`JOINTS_FEATURE_DIM`-d feature concatenated with the pooled ResNet feature; the
  network then regresses SMPL from the image *and* the joints (``joints.*`` keys of its checkpoints);
  with an IK network attached (:meth:`CliffNet.attach_ik`, ``aux_image.init: ik``) the regressor starts
  from the IK network's answer for those joints instead of the mean (frozen, ``ik.*`` keys);
* with a 2D-keypoint lifter attached (:meth:`CliffNet.attach_lifter`, job switch
  ``lifter.enabled``) the regressor starts from the lifter's pose of the row's 2D keypoints
  instead of the mean pose (SPIN starts its fits from a lifter the same way); the lifter is
  frozen and stored in the network's checkpoints (``lifter.*`` keys).

Rotations are regressed in the continuous 6D representation (Zhou et al. 2019; first two
columns of the rotation matrix) and turned into matrices by Gram-Schmidt, always in float32
so the network can run under AMP autocast. The 6 numbers are read as a 3x2 matrix row by row
(``reshape(3, 2)``, columns = the two basis vectors), which is exactly SPIN/CLIFF's
``rot6d_to_rotmat`` (``x.view(-1, 3, 2)``, ``a1 = x[:, :, 0]``, ``a2 = x[:, :, 1]``).

Official CLIFF weights (``network.convention: cliff``): a released ``cliff_res50``
checkpoint maps one to one (:data:`CLIFF_KEY_MAP`: ``encoder.*`` -> ``backbone.*``,
``fc1``/``fc2``, ``decpose``/``decshape``/``deccam`` -> ``dec_pose``/``dec_betas``/``dec_cam``,
``init_pose``/``init_shape``/``init_cam`` -> the mean-parameter buffers, so the regressor
starts from CLIFF's own mean parameters). With that convention the incoming Eq. 5 bbox
information is rescaled as CLIFF's ``demo.py`` does (:func:`cliff_bbox_info`). Image
normalisation (ImageNet mean/std, RGB) is already CLIFF's; set ``crop.size: 224``. Weights load through :mod:`annotator.storage`, so
``s3://`` paths work; nothing is ever downloaded.
"""
from __future__ import annotations

import io
import math
from typing import Callable

import torch
import torchvision
from torch import nn

from annotator import storage
from annotator.config import NetworkConfig
from annotator.geometry.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from annotator.model.ik import IKNet, ik_inputs
from annotator.model.lifter import Lifter

NUM_JOINTS = 24
"""SMPL joints with a rotation: the root (global orient) + 23 body joints."""
ROT6D = 6
POSE_DIM = NUM_JOINTS * ROT6D
CAM_DIM = 3
"""Weak-perspective crop camera ``(s, tx, ty)`` (HMR; CLIFF Eq. 1)."""
BBOX_INFO_DIM = 3
"""``I_bbox = [c_x / f, c_y / f, b / f]`` (CLIFF Eq. 5)."""
HIDDEN_DIM = 1024
"""Width of the two regressor layers (HMR / SPIN / CLIFF)."""
DROPOUT = 0.5
"""Dropout after each regressor layer (HMR / SPIN / CLIFF)."""
JOINTS_FEATURE_DIM = 512
"""Width of the 3D-joints feature of the aux-set annotator (NeuralAnnot Sec. 3.1: two FC layers to 512-d)."""
JOINTS_PREFIX = "joints."
OUTPUT_INIT_GAIN = 0.01
"""Xavier gain of the three output layers (SPIN/CLIFF): the first predictions stay within
about 1% of the mean parameters, so training starts from a plausible upright person instead
of random rotations that the 2D loss cannot untangle."""

MEAN_CAM_SCALE = 0.9
"""Initial weak-perspective scale ``s`` (SPIN's mean camera ``(0.9, 0, 0)``). ``s`` maps metres
to crop coordinates normalised to [-1, 1]; a ~1.7 m tall person then spans 1.7 * 0.9 / 2 ~ 77%
of the crop side, which matches a person box enlarged by ``crop.bbox_scale`` = 1.2 (~83%)."""

_BACKBONES: dict[str, tuple[Callable[..., nn.Module], int]] = {
    # name -> (torchvision constructor, pooled feature width)
    "resnet18": (torchvision.models.resnet18, 512),
    "resnet34": (torchvision.models.resnet34, 512),
    "resnet50": (torchvision.models.resnet50, 2048),
}
_HEAD_PREFIX = "fc."
"""torchvision's ImageNet classification head; ignored when loading backbone weights."""


#: CLIFF res50 checkpoint key prefix -> CliffNet key prefix.
CLIFF_KEY_MAP = {"encoder.": "backbone.", "fc1.": "fc1.", "fc2.": "fc2.", "decpose.": "dec_pose.",
                 "decshape.": "dec_betas.", "deccam.": "dec_cam."}
CLIFF_BUFFER_MAP = {"init_pose": "mean_pose_6d", "init_shape": "mean_betas", "init_cam": "mean_crop_cam"}
#: CLIFF demo.py's bbox-info normalisation (constants "calculated from H36M data").
CLIFF_BBOX_XY_SCALE = 2.8
CLIFF_BBOX_B_MEAN = 0.24
CLIFF_BBOX_B_STD = 0.06


def cliff_bbox_info(eq5: torch.Tensor) -> torch.Tensor:
    """Eq. 5 ``[c_x / f, c_y / f, b / f]`` -> CLIFF ``demo.py``'s normalised input
    ``[c_x / f * 2.8, c_y / f * 2.8, (b - 0.24 f) / (0.06 f)]``."""
    return torch.cat([eq5[:, :2] * CLIFF_BBOX_XY_SCALE, (eq5[:, 2:] - CLIFF_BBOX_B_MEAN) / CLIFF_BBOX_B_STD], dim=1)


def is_cliff_checkpoint(state: dict) -> bool:
    return any(k.startswith(("encoder.", "decpose.")) for k in state)


def from_cliff_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official CLIFF res50 state dict to CliffNet keys (unknown keys kept as they
    are, so the loader names them); ``encoder.fc.*`` (an unused ImageNet head) is dropped."""
    out = {}
    for key, value in state.items():
        if key in CLIFF_BUFFER_MAP:
            out[CLIFF_BUFFER_MAP[key]] = value.reshape(1, -1)
            continue
        if key.startswith("encoder.fc."):
            continue
        prefix = next((p for p in CLIFF_KEY_MAP if key.startswith(p)), None)
        out[key if prefix is None else CLIFF_KEY_MAP[prefix] + key[len(prefix):]] = value
    return out


LIFTER_PREFIX = "lifter."
IK_PREFIX = "ik."
FROZEN_PREFIXES = (LIFTER_PREFIX, IK_PREFIX)
"""Keys of the frozen starting-point networks a checkpoint may carry."""


class WeightsError(ValueError):
    """A weights file cannot be loaded into the network; the message names the file and keys."""


def mean_parameters(num_betas: int) -> dict[str, torch.Tensor]:
    """The regressor's starting point (HMR "mean theta"), each as a (1, D) float32 tensor.

    * ``pose_6d``: identity rotation for the 23 body joints (the SMPL rest pose, arms out in
      a T) and 180 deg about x for the root. SMPL is y-up and faces +z; the camera frame is
      OpenCV (y down, z forward), so this rotation puts the head up in the image and the face
      towards the camera: an upright person facing the camera.
    * ``betas``: zeros, the mean body shape of the model's shape space.
    * ``crop_cam``: ``(MEAN_CAM_SCALE, 0, 0)``, the person centred in the crop.
    """
    root = axis_angle_to_matrix(torch.tensor([[math.pi, 0.0, 0.0]]))
    body = torch.eye(3).expand(NUM_JOINTS - 1, 3, 3)
    rotmats = torch.cat([root, body], dim=0)
    return {
        "pose_6d": matrix_to_rot6d(rotmats).reshape(1, POSE_DIM).float(),
        "betas": torch.zeros(1, num_betas),
        "crop_cam": torch.tensor([[MEAN_CAM_SCALE, 0.0, 0.0]]),
    }


class CliffNet(nn.Module):
    """CLIFF / HMR regressor. ``forward(img, bbox_info) -> {rotmat, pose_6d, betas, crop_cam}``.

    Args:
        net_cfg: backbone, optional weights path, IEF iterations, bbox-info switch.
        crop_size: side of the square input crop in px (only recorded; the ResNet pools
            globally, so any size >= 32 works).
        num_betas: number of shape coefficients to regress (the body model's ``num_betas``).
        joints_in: 0 for the image-only network; ``K`` (the batch convention's joints) for the
            aux-set annotator that also reads the row's ground-truth 3D joints.
        joints_root: indices of the joints whose mean is the root the input joints are taken
            relative to (the convention's ``root``); required with ``joints_in``.
    """

    def __init__(self, net_cfg: NetworkConfig, crop_size: int, num_betas: int = 10, joints_in: int = 0,
                 joints_root: tuple[int, ...] = ()):
        super().__init__()
        if net_cfg.backbone not in _BACKBONES:
            raise ValueError(f"network.backbone: unknown backbone {net_cfg.backbone!r}; expected one of {sorted(_BACKBONES)}")
        make_backbone, feat_dim = _BACKBONES[net_cfg.backbone]
        self.net_cfg = net_cfg
        self.crop_size = int(crop_size)
        self.num_betas = int(num_betas)
        self.iterations = int(net_cfg.iterations)
        self.use_bbox_info = bool(net_cfg.use_bbox_info)
        self.convention = getattr(net_cfg, "convention", "annotator")

        self.backbone = make_backbone(weights=None)
        self.backbone.fc = nn.Identity()  # keep conv1..layer4 + global pooling, drop ImageNet head

        self.joints_in, self.joints_root = int(joints_in), list(joints_root)
        self.joints: nn.Module | None = None
        if self.joints_in:
            if not self.joints_root:
                raise ValueError("CliffNet: joints_in needs joints_root (the convention's root joints)")
            self.joints = nn.Sequential(nn.Linear(4 * self.joints_in, JOINTS_FEATURE_DIM), nn.ReLU(),
                                        nn.Linear(JOINTS_FEATURE_DIM, JOINTS_FEATURE_DIM), nn.ReLU())
        state_dim = POSE_DIM + self.num_betas + CAM_DIM
        in_dim = feat_dim + (BBOX_INFO_DIM if self.use_bbox_info else 0) + state_dim + \
            (JOINTS_FEATURE_DIM if self.joints_in else 0)
        # As in HMR/SPIN/CLIFF there is no activation between the two hidden layers (they act
        # as one affine map regularised by dropout; the ResNet carries the capacity). Kept so
        # the reference hyper-parameters apply unchanged.
        self.fc1 = nn.Linear(in_dim, HIDDEN_DIM)
        self.drop1 = nn.Dropout(DROPOUT)
        self.fc2 = nn.Linear(HIDDEN_DIM, HIDDEN_DIM)
        self.drop2 = nn.Dropout(DROPOUT)
        self.dec_pose = nn.Linear(HIDDEN_DIM, POSE_DIM)
        self.dec_betas = nn.Linear(HIDDEN_DIM, self.num_betas)
        self.dec_cam = nn.Linear(HIDDEN_DIM, CAM_DIM)
        for layer in (self.dec_pose, self.dec_betas, self.dec_cam):
            nn.init.xavier_uniform_(layer.weight, gain=OUTPUT_INIT_GAIN)
            nn.init.zeros_(layer.bias)

        for name, value in mean_parameters(self.num_betas).items():
            self.register_buffer(f"mean_{name}", value)

        self.lifter: Lifter | None = None
        self.ik: IKNet | None = None
        if net_cfg.weights:
            load_weights(self, net_cfg.weights)

    def attach_lifter(self, lifter: Lifter) -> None:
        """Start the regressor from ``lifter``'s pose (frozen, always in eval mode)."""
        for p in lifter.parameters():
            p.requires_grad_(False)
        self.lifter = lifter.eval()

    def attach_ik(self, ik: IKNet) -> None:
        """Start the regressor from ``ik``'s rotations and shape of the row's 3D joints (frozen,
        always in eval mode); needs ``joints_in`` joints of the IK network's convention."""
        if not self.joints_in or ik.num_joints != self.joints_in:
            raise ValueError(f"CliffNet.attach_ik: an IK network of {ik.num_joints} joints needs joints_in = "
                             f"{ik.num_joints}, the network has {self.joints_in}")
        for p in ik.parameters():
            p.requires_grad_(False)
        self.ik = ik.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        for frozen in (self.lifter, self.ik):
            if frozen is not None:
                frozen.eval()
        return self

    def forward(self, img: torch.Tensor, bbox_info: torch.Tensor | None = None, keypoints_2d: torch.Tensor | None = None,
                focal: torch.Tensor | None = None, principal_point: torch.Tensor | None = None,
                joints_3d: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Regress SMPL parameters for a batch of crops.

        Args:
            img: (B, 3, S, S) normalised crops (any memory format, e.g. channels_last).
            bbox_info: (B, 3) CLIFF Eq. 5 box information; required when ``use_bbox_info``.
            keypoints_2d, focal, principal_point: (B, K, 3) pixel keypoints with confidence,
                (B,), (B, 2): the lifter's inputs; required when a lifter is attached.
            joints_3d: (B, K, 4) ground-truth 3D joints (metres) + confidence; read only by a
                network with ``joints_in`` (required there; a joint of confidence 0 is absent).

        Returns:
            ``rotmat`` (B, 24, 3, 3) float32 rotation matrices (root first), ``pose_6d``
            (B, 144), ``betas`` (B, num_betas), ``crop_cam`` (B, 3) = (s, tx, ty); the
            parameter outputs are float32 even under autocast.
        """
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"CliffNet: img must be (B, 3, S, S), got {tuple(img.shape)}")
        batch = img.shape[0]
        feat = self.backbone(img)
        inputs = [feat]
        if self.use_bbox_info:
            if bbox_info is None:
                raise ValueError("CliffNet: bbox_info (B, 3) is required when network.use_bbox_info is true")
            if bbox_info.shape != (batch, BBOX_INFO_DIM):
                raise ValueError(f"CliffNet: bbox_info must be ({batch}, {BBOX_INFO_DIM}), got {tuple(bbox_info.shape)}")
            if self.convention == "cliff":
                bbox_info = cliff_bbox_info(bbox_info.float())
            inputs.append(bbox_info.to(feat.dtype))
        if self.joints is not None:
            if joints_3d is None or joints_3d.shape[:2] != (batch, self.joints_in):
                raise ValueError(f"CliffNet: joints_3d ({batch}, {self.joints_in}, 4) is required by the aux-set annotator, "
                                 f"got {None if joints_3d is None else tuple(joints_3d.shape)}")
            present = joints_3d[..., 3] > 0
            xyz = torch.where(present[..., None], joints_3d[..., :3], torch.zeros_like(joints_3d[..., :3])).float()
            inputs.append(self.joints(ik_inputs(xyz, present, self.joints_root)).to(feat.dtype))

        # The running estimate stays float32; only the deltas come out of the (maybe bf16) MLP.
        if self.lifter is not None:
            if keypoints_2d is None or focal is None or principal_point is None:
                raise ValueError("CliffNet: a lifter is attached; keypoints_2d, focal and principal_point are required")
            with torch.no_grad():
                pose = self.lifter.pose_6d(keypoints_2d, focal, principal_point).float()
        else:
            pose = self.mean_pose_6d.expand(batch, -1)
        betas = self.mean_betas.expand(batch, -1)
        if self.ik is not None:
            with torch.no_grad():
                start = self.ik(xyz, present.float())
            pose = matrix_to_rot6d(start["rotmat"]).reshape(batch, POSE_DIM).float()
            betas = start["betas"].float()
        cam = self.mean_crop_cam.expand(batch, -1)
        for _ in range(self.iterations):
            state = torch.cat([pose, betas, cam], dim=1).to(feat.dtype)
            hidden = self.drop2(self.fc2(self.drop1(self.fc1(torch.cat(inputs + [state], dim=1)))))
            pose = pose + self.dec_pose(hidden).float()
            betas = betas + self.dec_betas(hidden).float()
            cam = cam + self.dec_cam(hidden).float()

        with torch.autocast(device_type=img.device.type, enabled=False):
            rotmat = rot6d_to_matrix(pose.float().reshape(batch, NUM_JOINTS, ROT6D))
        return {"rotmat": rotmat, "pose_6d": pose, "betas": betas, "crop_cam": cam}


def net_inputs(batch: dict[str, torch.Tensor], net: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The keyword arguments of :meth:`CliffNet.forward` taken from a model batch; ``joints_3d``
    only for a network that reads them (``net``, maybe DDP-wrapped, has ``joints_in``)."""
    keys = ("img", "bbox_info", "keypoints_2d", "focal", "principal_point") + \
        (("joints_3d",) if getattr(getattr(net, "module", net), "joints_in", 0) else ())
    return {k: batch[k] for k in keys if k in batch}


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Read a ``torch.save``-d state dict (optionally wrapped under ``model``/``state_dict``)."""
    try:
        raw = storage.read_bytes(path)
    except FileNotFoundError:
        raise WeightsError(f"{storage.redact(path)}: network weights file not found") from None
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors come in many types
        raise WeightsError(f"{storage.redact(path)}: not a torch weights file ({type(err).__name__}: {err})") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{storage.redact(path)}: expected a state dict of tensors (or one under 'model'/'state_dict')")
    # DistributedDataParallel / torch.compile wrappers prefix every key.
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


def checkpoint_joints_in(source: str | dict[str, torch.Tensor]) -> int:
    """The ``joints_in`` of the network saved at ``source`` (a path, or the state dict
    :func:`read_state_dict` read from it; 0: an image-only network)."""
    state = read_state_dict(source) if isinstance(source, str) else source
    weight = state.get(JOINTS_PREFIX + "0.weight")
    return 0 if weight is None else int(weight.shape[1]) // 4


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def load_weights(net: CliffNet, path: str, state: dict[str, torch.Tensor] | None = None) -> str:
    """Load a full CliffNet checkpoint, an official CLIFF res50 checkpoint or a torchvision-style
    ResNet state dict from ``path``.

    A state dict whose keys start with ``backbone.`` is a full network; one with ``encoder.*`` /
    ``decpose.*`` keys is an official CLIFF checkpoint (renamed by :func:`from_cliff_state_dict`;
    needs ``network.convention: cliff``); otherwise it must be a torchvision ResNet of the
    configured depth (its ``fc.*`` ImageNet head is ignored).
    Any missing, unexpected or wrongly shaped key is an error that names the file and keys.
    ``state``: the file's state dict when the caller has already read it (:func:`read_state_dict`).

    Returns:
        ``"full"``, ``"cliff"`` or ``"backbone"``: what was loaded.
    """
    state = read_state_dict(path) if state is None else state
    cliff = is_cliff_checkpoint(state)
    if cliff:
        if net.convention != "cliff":
            raise WeightsError(f"{storage.redact(path)}: an official CLIFF checkpoint (encoder.*/decpose.* keys) "
                               "expects CLIFF's bbox-info normalisation; set network.convention: cliff")
        state = from_cliff_state_dict(state)
    if any(k.startswith("backbone.") for k in state):
        kind, target = "full", net
        if net.lifter is None and any(k.startswith(LIFTER_PREFIX) for k in state):
            net.attach_lifter(Lifter(Lifter.keypoints_in(state, LIFTER_PREFIX)))
        if net.ik is None and net.joints_in and any(k.startswith(IK_PREFIX) for k in state):
            net.attach_ik(IKNet(*IKNet.shape_of({k[len(IK_PREFIX):]: v for k, v in state.items()
                                                 if k.startswith(IK_PREFIX)})))
    else:
        kind, target = "backbone", net.backbone
        state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIX)}
    expected = target.state_dict()
    for prefix in FROZEN_PREFIXES:
        if kind == "full" and not any(k.startswith(prefix) for k in state):
            # weights of a network without a lifter / IK start (the user's, CLIFF's): the attached one stays
            expected = {k: v for k, v in expected.items() if not k.startswith(prefix)}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_preview(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatch: {_preview(wrong_shape)}")
    if problems:
        raise WeightsError(
            f"{storage.redact(path)}: cannot load as {kind} weights for a {net.net_cfg.backbone} CliffNet "
            f"(use_bbox_info={net.use_bbox_info}, num_betas={net.num_betas}): " + "; ".join(problems)
        )
    target.load_state_dict(state, strict=len(expected) == len(target.state_dict()))
    return "cliff" if cliff else kind
