"""VPoser v2 body-pose prior: the official architecture, its checkpoints, training, the latent L2 loss.

Architecture (Pavlakos et al. 2019, VPoser v2 / ``V02_05`` of ``human_body_prior``):
a VAE on the 21 SMPL body joints (no hands) in axis-angle, ``(B, 63)``. Module
structure and parameter names match ``human_body_prior.models.vposer_model.VPoser``
exactly, so an official state dict loads with ``strict=True``::

    encoder_net: 0 BatchFlatten, 1 BatchNorm1d(63), 2 Linear(63, H), 3 LeakyReLU,
                 4 BatchNorm1d(H), 5 Dropout(0.1), 6 Linear(H, H), 7 Linear(H, H),
                 8 NormalDistDecoder(H, Z)  (mu, logvar: Linear(H, Z); scale = softplus(logvar))
    decoder_net: 0 Linear(Z, H), 1 LeakyReLU, 2 Dropout(0.1), 3 Linear(H, H),
                 4 LeakyReLU, 5 Linear(H, 21 * 6), 6 ContinousRotReprDecoder (6D -> matrix)

with ``H = 512`` neurons and ``Z = 32`` latent dims for V02_05. The 6D layout is the
one of :mod:`annotator.geometry.rotations` (first two matrix columns, row-major).

Checkpoints: the official ``V02_05_epoch=*.ckpt`` is a PyTorch-Lightning file whose
``state_dict`` keys start with ``vp_model.`` (the trainer also stores its body model
under ``bm_train.``, which is dropped). Our own files (:func:`save_vposer`) hold
``{"format", "num_neurons", "latent_dim", "state_dict"}``.

Training: the official loss is KL(q(z|x) || N(0, I)) (weight 0.005) + L1 on SMPL-X
vertices (weight 4) + geodesic rotation loss (weight 2, first 15 epochs) + L1 on joints.
Here no body model is needed: the vertex/joint terms are replaced by an axis-angle L2
term on the reconstructed pose (:data:`AA_WEIGHT`, taking the vertex term's slot) while
the geodesic term is kept for all epochs.

Prior loss for fitting (three-recipes paper: "VPoser latent + L2, weight 1e-2"):
``||mu(encode(pose))||^2`` per sample (:func:`pose_prior_loss`).
"""
from __future__ import annotations

import io
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from annotator import storage
from annotator.geometry.rotations import (
    axis_angle_to_matrix,
    geodesic_distance,
    matrix_to_axis_angle,
    rot6d_to_matrix,
)

NUM_BODY_JOINTS = 21
"""SMPL body joints covered by VPoser: SMPL joints 1..21 (no hand joints 22, 23)."""
NUM_NEURONS = 512
LATENT_DIM = 32
DROPOUT = 0.1
"""Dropout probability of the official encoder and decoder."""

KL_WEIGHT = 0.005
"""Official V02_05 ``loss_kl_wt``."""
GEODESIC_WEIGHT = 2.0
"""Official V02_05 ``loss_matrot_wt`` (geodesic distance of the joint rotations)."""
AA_WEIGHT = 4.0
"""Weight of the axis-angle L2 reconstruction term; it replaces the official vertex L1
term (``loss_rec_wt`` = 4), so it takes its weight."""
WEIGHT_DECAY = 1e-5
"""Official V02_05 Adam weight decay."""

CHECKPOINT_FORMAT = "annotator.vposer/v1"
LIGHTNING_PREFIX = "vp_model."


class BatchFlatten(nn.Module):
    """``(B, ...) -> (B, -1)`` (official ``model_components.BatchFlatten``; no parameters)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1)


class NormalDistDecoder(nn.Module):
    """Linear heads to a diagonal Normal: ``N(mu(x), softplus(logvar(x)))`` (official naming)."""

    def __init__(self, num_feat_in: int, latent_dim: int):
        super().__init__()
        self.mu = nn.Linear(num_feat_in, latent_dim)
        self.logvar = nn.Linear(num_feat_in, latent_dim)

    def forward(self, x: Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mu(x), F.softplus(self.logvar(x)))


class ContinousRotReprDecoder(nn.Module):
    """``(B, J * 6)`` -> ``(B * J, 3, 3)`` by Gram-Schmidt (official name, spelling included)."""

    def forward(self, x: Tensor) -> Tensor:
        return rot6d_to_matrix(x.reshape(-1, 6))


class VPoser(nn.Module):
    """VPoser v2; parameter names and shapes equal the official model's."""

    def __init__(self, num_neurons: int = NUM_NEURONS, latent_dim: int = LATENT_DIM):
        super().__init__()
        self.num_joints = NUM_BODY_JOINTS
        self.latent_dim = latent_dim
        n_features = self.num_joints * 3
        self.encoder_net = nn.Sequential(
            BatchFlatten(),
            nn.BatchNorm1d(n_features),
            nn.Linear(n_features, num_neurons),
            nn.LeakyReLU(),
            nn.BatchNorm1d(num_neurons),
            nn.Dropout(DROPOUT),
            nn.Linear(num_neurons, num_neurons),
            nn.Linear(num_neurons, num_neurons),
            NormalDistDecoder(num_neurons, latent_dim),
        )
        self.decoder_net = nn.Sequential(
            nn.Linear(latent_dim, num_neurons),
            nn.LeakyReLU(),
            nn.Dropout(DROPOUT),
            nn.Linear(num_neurons, num_neurons),
            nn.LeakyReLU(),
            nn.Linear(num_neurons, self.num_joints * 6),
            ContinousRotReprDecoder(),
        )

    @property
    def num_neurons(self) -> int:
        return self.encoder_net[2].out_features

    def encode(self, body_pose: Tensor) -> torch.distributions.Normal:
        """``(B, 63)`` axis-angle body pose -> ``q(z | pose)``."""
        if body_pose.shape[-1] != self.num_joints * 3 and body_pose.shape[-2:] != (self.num_joints, 3):
            raise ValueError(f"VPoser.encode: expected (B, 63) or (B, 21, 3) body pose, got {tuple(body_pose.shape)}")
        return self.encoder_net(body_pose)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """``(B, Z)`` latents -> ``pose_body`` ``(B, 63)`` axis-angle and ``pose_body_matrot`` ``(B, 21, 3, 3)``."""
        mats = self.decoder_net(z).reshape(z.shape[0], self.num_joints, 3, 3)
        return {"pose_body": matrix_to_axis_angle(mats).reshape(z.shape[0], -1), "pose_body_matrot": mats}

    def forward(self, body_pose: Tensor) -> dict[str, Tensor]:
        """Encode, sample with the reparameterisation trick, decode (as the official model)."""
        q_z = self.encode(body_pose)
        out = self.decode(q_z.rsample())
        out.update(poZ_body_mean=q_z.mean, poZ_body_std=q_z.scale, q_z=q_z)
        return out


def body_pose_63(body_pose: Tensor) -> Tensor:
    """SMPL body pose ``(B, 69)`` (23 joints) or ``(B, 63)`` -> the 21 VPoser joints ``(B, 63)``."""
    if body_pose.dim() != 2 or body_pose.shape[-1] not in (63, 69):
        raise ValueError(f"expected a (B, 69) or (B, 63) axis-angle body pose, got {tuple(body_pose.shape)}")
    return body_pose[:, : NUM_BODY_JOINTS * 3]


def pose_prior_loss(vposer: VPoser, body_pose: Tensor) -> Tensor:
    """Latent L2 prior ``(B,)``: ``||mu(encode(pose))||^2`` (three-recipes paper).

    ``vposer`` must be in eval mode (BatchNorm running statistics, no dropout), usually
    with frozen parameters; gradients flow to ``body_pose``.
    """
    if vposer.training:
        raise ValueError("pose_prior_loss: call vposer.eval() first (training-mode BatchNorm/dropout make the prior batch-dependent)")
    mu = vposer.encode(body_pose_63(body_pose)).mean
    return (mu * mu).sum(dim=-1)


def save_vposer(model: VPoser, path: str) -> None:
    """Write ``model`` to ``path`` (local or ``s3://``) in this project's format."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "num_neurons": model.num_neurons,
        "latent_dim": model.latent_dim,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    storage.write_bytes_atomic(path, buf.getvalue())


def load_vposer(path: str, map_location: str | torch.device = "cpu", allow_pickle: bool = False) -> VPoser:
    """Load a VPoser from an official V02_05 Lightning ``.ckpt`` or a :func:`save_vposer` file.

    Sizes (neurons, latent) are read from the weights. The model is returned in eval
    mode. ``allow_pickle=True`` permits arbitrary pickled objects in the file (only for
    trusted files; needed if a Lightning checkpoint stores non-tensor hyper-parameters).
    """
    try:
        raw = storage.read_bytes(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{storage.redact(path)}: VPoser checkpoint not found") from None
    name = storage.redact(path)
    try:
        obj = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=not allow_pickle)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{name}: cannot read VPoser checkpoint ({type(err).__name__}: {err}); "
                         "if it is a trusted official checkpoint, retry with allow_pickle=True") from None
    state = _extract_state_dict(obj, name)
    try:
        num_neurons = state["encoder_net.2.weight"].shape[0]
        latent_dim = state["encoder_net.8.mu.weight"].shape[0]
    except KeyError as err:
        raise ValueError(f"{name}: not a VPoser v2 state dict (missing {err.args[0]!r}); keys: {sorted(state)[:8]}...") from None
    model = VPoser(num_neurons=num_neurons, latent_dim=latent_dim)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{name}: VPoser v2 weights do not fit: {err}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{name}: VPoser v2 keys do not match: missing {result.missing_keys}, "
                         f"unexpected {result.unexpected_keys}")
    return model.to(map_location).eval()


def _extract_state_dict(obj, path: str) -> dict[str, Tensor]:
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a checkpoint dict, got {type(obj).__name__}")
    if obj.get("format") == CHECKPOINT_FORMAT:
        return dict(obj["state_dict"])
    state = obj.get("state_dict", obj)
    if any(k.startswith(LIGHTNING_PREFIX) for k in state):
        # Lightning trainer: keep the VPoser sub-module, drop e.g. the trainer's body model (bm_train.*)
        return {k[len(LIGHTNING_PREFIX):]: v for k, v in state.items() if k.startswith(LIGHTNING_PREFIX)}
    return dict(state)


def vposer_loss(model: VPoser, body_pose: Tensor, kl_weight: float = KL_WEIGHT) -> dict[str, Tensor]:
    """Training loss terms (means over the batch) for ``(B, 63)`` poses; ``"loss"`` is the total."""
    out = model(body_pose)
    q_z = out["q_z"]
    prior = torch.distributions.Normal(torch.zeros_like(q_z.mean), torch.ones_like(q_z.scale))
    kl = torch.distributions.kl_divergence(q_z, prior).sum(dim=-1).mean()
    target = axis_angle_to_matrix(body_pose.reshape(-1, model.num_joints, 3))
    geodesic = geodesic_distance(out["pose_body_matrot"], target).mean()
    aa = (out["pose_body"] - body_pose).pow(2).sum(dim=-1).mean()
    loss = kl_weight * kl + GEODESIC_WEIGHT * geodesic + AA_WEIGHT * aa
    return {"loss": loss, "kl": kl, "geodesic": geodesic, "aa": aa}


def train_vposer(
    body_poses: Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    kl_weight: float = KL_WEIGHT,
    device: str = "cpu",
    log: Callable[[int, dict[str, float]], None] | None = None,
    num_neurons: int = NUM_NEURONS,
    latent_dim: int = LATENT_DIM,
) -> tuple[VPoser, dict[str, list[float]]]:
    """Train a VPoser on ``(N, 63)`` (or ``(N, 69)``) axis-angle body poses.

    Adam (official weight decay), shuffled mini-batches (the last partial batch is
    dropped so BatchNorm never sees a single sample). Deterministic for a given
    ``seed`` on CPU; the global RNG state is left untouched. ``history`` holds the
    per-epoch means of ``loss``, ``kl``, ``geodesic``, ``aa``; ``log(epoch, means)`` is
    called after every epoch. Returns the model in eval mode.
    """
    poses = body_pose_63(body_poses).to(device=device, dtype=torch.float32)
    n = poses.shape[0]
    batch_size = min(batch_size, n)
    if batch_size < 2:
        raise ValueError(f"train_vposer: BatchNorm needs batches of >= 2 poses (poses: {n}, batch_size: {batch_size})")
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = VPoser(num_neurons=num_neurons, latent_dim=latent_dim).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
        gen = torch.Generator().manual_seed(seed)
        history: dict[str, list[float]] = {"loss": [], "kl": [], "geodesic": [], "aa": []}
        model.train()
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen).to(device)
            sums = {k: 0.0 for k in history}
            steps = n // batch_size
            for step in range(steps):
                batch = poses[order[step * batch_size:(step + 1) * batch_size]]
                terms = vposer_loss(model, batch, kl_weight)
                opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                opt.step()
                for k in sums:
                    sums[k] += float(terms[k].detach())
            means = {k: v / steps for k, v in sums.items()}
            for k, v in means.items():
                history[k].append(v)
            if log is not None:
                log(epoch, means)
    return model.eval(), history
