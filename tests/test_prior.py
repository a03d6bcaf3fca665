"""VPoser v2: official key layout, checkpoint loading, training behaviour, latent prior."""
from __future__ import annotations

import math

import pytest
import torch

from annotator.body.prior import VPoser, load_vposer, pose_prior_loss, save_vposer, train_vposer

# Official human_body_prior V02_05 VPoser state dict (vposer_model.py, num_neurons=512, latentD=32).
# Lightning checkpoints store these with the prefix "vp_model.".
OFFICIAL_V02_05_KEYS = {
    "encoder_net.1.weight": (63,),
    "encoder_net.1.bias": (63,),
    "encoder_net.1.running_mean": (63,),
    "encoder_net.1.running_var": (63,),
    "encoder_net.1.num_batches_tracked": (),
    "encoder_net.2.weight": (512, 63),
    "encoder_net.2.bias": (512,),
    "encoder_net.4.weight": (512,),
    "encoder_net.4.bias": (512,),
    "encoder_net.4.running_mean": (512,),
    "encoder_net.4.running_var": (512,),
    "encoder_net.4.num_batches_tracked": (),
    "encoder_net.6.weight": (512, 512),
    "encoder_net.6.bias": (512,),
    "encoder_net.7.weight": (512, 512),
    "encoder_net.7.bias": (512,),
    "encoder_net.8.mu.weight": (32, 512),
    "encoder_net.8.mu.bias": (32,),
    "encoder_net.8.logvar.weight": (32, 512),
    "encoder_net.8.logvar.bias": (32,),
    "decoder_net.0.weight": (512, 32),
    "decoder_net.0.bias": (512,),
    "decoder_net.3.weight": (512, 512),
    "decoder_net.3.bias": (512,),
    "decoder_net.5.weight": (126, 512),
    "decoder_net.5.bias": (126,),
}


def _official_like_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in OFFICIAL_V02_05_KEYS.items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(1000, dtype=torch.long)
        elif k.endswith("running_var"):
            state[k] = 0.5 + torch.rand(shape, generator=g)
        else:
            state[k] = 0.05 * torch.randn(shape, generator=g)
    return state


def _synthetic_poses(n, seed):
    """Poses on a 4-D manifold: plausible-ish, structured, within +-0.8 rad per component."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(4, 63, generator=torch.Generator().manual_seed(123)) * 0.4
    return 0.8 * torch.tanh(torch.randn(n, 4, generator=g) @ basis)


def test_parameter_names_and_shapes_match_official_v02_05():
    model = VPoser()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == OFFICIAL_V02_05_KEYS
    model.load_state_dict(_official_like_state(), strict=True)


def test_load_official_lightning_checkpoint(tmp_path):
    state = _official_like_state(1)
    ckpt = {
        "epoch": 12,
        "global_step": 3456,
        "pytorch-lightning_version": "1.1.0",
        "state_dict": {**{"vp_model." + k: v for k, v in state.items()},
                       "bm_train.init_pose_body": torch.zeros(1, 63)},  # trainer's body model: dropped
    }
    path = tmp_path / "V02_05_epoch=12_val_loss=0.03.ckpt"
    torch.save(ckpt, path)
    model = load_vposer(str(path))
    assert not model.training
    assert torch.equal(model.encoder_net[8].mu.weight, state["encoder_net.8.mu.weight"])
    assert torch.equal(model.decoder_net[5].bias, state["decoder_net.5.bias"])
    # decode output layout
    out = model.decode(torch.zeros(3, 32))
    assert out["pose_body"].shape == (3, 63) and out["pose_body_matrot"].shape == (3, 21, 3, 3)
    eye = torch.eye(3).expand(3, 21, 3, 3)
    m = out["pose_body_matrot"]
    assert torch.allclose(m @ m.transpose(-1, -2), eye, atol=1e-5)


def test_mismatched_checkpoint_error_names_the_file(tmp_path):
    state = _official_like_state()
    state.pop("decoder_net.3.bias")
    state["decoder_net.9.weight"] = torch.zeros(2)
    path = tmp_path / "broken.ckpt"
    torch.save({"state_dict": {"vp_model." + k: v for k, v in state.items()}}, path)
    with pytest.raises(ValueError, match=r"broken\.ckpt.*missing \['decoder_net\.3\.bias'\].*decoder_net\.9\.weight"):
        load_vposer(str(path))
    state = _official_like_state()
    state["decoder_net.5.weight"] = torch.zeros(120, 512)
    torch.save({"state_dict": {"vp_model." + k: v for k, v in state.items()}}, tmp_path / "shape.ckpt")
    with pytest.raises(ValueError, match=r"(?s)shape\.ckpt.*size mismatch for decoder_net\.5\.weight"):
        load_vposer(str(tmp_path / "shape.ckpt"))
    garbage = tmp_path / "not_a_ckpt.pt"
    garbage.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not_a_ckpt.pt"):
        load_vposer(str(garbage))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VPoser(num_neurons=64, latent_dim=8)
    model.load_state_dict({k: v + 0.01 * torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
                           for k, v in model.state_dict().items()})
    model.eval()
    path = str(tmp_path / "prior" / "vposer.pt")
    save_vposer(model, path)
    loaded = load_vposer(path)
    assert loaded.num_neurons == 64 and loaded.latent_dim == 8
    x = _synthetic_poses(5, 0)
    assert torch.equal(loaded.encode(x).mean, model.encode(x).mean)
    assert torch.equal(loaded.decode(torch.ones(2, 8))["pose_body"], model.decode(torch.ones(2, 8))["pose_body"])


def test_training_learns_the_pose_set_and_the_latent_prior(single_thread):
    train = _synthetic_poses(1024, seed=0)
    held_out = _synthetic_poses(256, seed=1)
    untrained, _ = train_vposer(train, epochs=0, batch_size=128, lr=1e-3, seed=0)
    model, history = train_vposer(train, epochs=12, batch_size=128, lr=1e-3, seed=0)
    assert len(history["loss"]) == 12
    assert history["loss"][-1] < 0.3 * history["loss"][0], history["loss"]

    def recon_err(m):
        with torch.no_grad():
            rec = m.decode(m.encode(held_out).mean)["pose_body"]
        return (rec - held_out).norm(dim=-1).mean().item()

    before, after = recon_err(untrained), recon_err(model)
    assert after < 0.5 * before, (before, after)

    # the latent L2 prior scores training-like poses far lower than random extreme poses
    extreme = (torch.rand(256, 69, generator=torch.Generator().manual_seed(2)) * 2 - 1) * math.pi
    with torch.no_grad():
        plausible_loss = pose_prior_loss(model, held_out).mean()
        extreme_loss = pose_prior_loss(model, extreme).mean()
    assert extreme_loss > 5 * plausible_loss, (plausible_loss, extreme_loss)

    # deterministic for a seed
    again, history2 = train_vposer(train[:256], epochs=1, batch_size=128, lr=1e-3, seed=3)
    again2, history3 = train_vposer(train[:256], epochs=1, batch_size=128, lr=1e-3, seed=3)
    assert history2 == history3


def test_pose_prior_loss_gradients_and_eval_guard():
    model = VPoser(num_neurons=32, latent_dim=4)
    pose = torch.zeros(2, 69, requires_grad=True)
    with pytest.raises(ValueError, match="eval"):
        pose_prior_loss(model, pose)
    model.eval()
    loss = pose_prior_loss(model, pose)
    assert loss.shape == (2,)
    loss.sum().backward()
    assert pose.grad[:, 63:].abs().sum() == 0 and pose.grad[:, :63].abs().sum() > 0
    with pytest.raises(ValueError, match="69"):
        pose_prior_loss(model, torch.zeros(2, 72))
