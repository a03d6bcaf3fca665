"""SMPLify in batch mode (Bogo et al. 2016; the variant in SPIN, Kolotouros et al. 2019).

Fits SMPL-format parameters to 2D keypoints of many people at once, each with its own
full-image camera (known focal length and principal point, OpenCV frame: x right, y
down, z forward, metres). Two stages, both Adam (SPIN: lr 1e-2):

1. **Camera** (``cfg.camera_iters``): global orientation + translation on the torso
   joints (shoulders, hips; all visible joints for a sample without a visible torso
   joint), body pose and shape fixed, plain squared reprojection error (SPIN's
   ``camera_fitting_loss``). With pose and shape fixed the keypoints are a rigid motion
   of one rest evaluation, so this stage needs no body-model evaluation per step. From the
   mean initialisation both "facing the camera" and "facing away" are tried and the
   better torso fit is kept per sample (SMPLify's two-orientation trick; SPIN has a
   network initialisation instead, which is then used as given).
2. **Body** (``cfg.body_iters``): body pose, betas, global orientation, translation on
   all joints, minimising per sample (SPIN's ``body_fitting_loss``)::

       sum_j conf_j^2 sum_{u,v} GM(proj_j - x_j; sigma_px)   (per pixel coordinate, as SPIN)
       + pose_prior_weight^2  * P(body_pose)
       + angle_prior_weight^2 * sum exp(sign * bend)^2   (elbows, knees)
       + shape_prior_weight^2 * ||betas||^2

   with ``P`` the VPoser latent L2 (:func:`annotator.body.prior.pose_prior_loss`) or, if
   no VPoser is given, an L2 on the axis-angle body pose (weaker: it only pulls towards
   the zero pose).

Speed: the keypoints come from :mod:`annotator.fitting.keypoints` (exact, without posing
the ~14k mesh vertices: ~150x faster than ``BodyModel.forward`` for a batch of 64).

Batching: the objective is the **sum** of per-sample energies and Adam's update is
element-wise, so every sample's trajectory is the one it would have alone, up to the
rounding of batched kernels (a divergent sample cannot disturb the others). Gradients are taken with
:func:`torch.autograd.grad` w.r.t. the fitted parameters only, so the body model and the
VPoser are never modified. Zero-confidence joints (and non-finite coordinates, treated
as zero confidence) have no influence. No randomness: results are deterministic.

Translation is optimised in metres, as in SPIN (Adam moves it by about ``lr`` = 1 cm per
step). A depth-relative parameterisation (steps of 1 % of the depth) was tried: it
converges no better from the mean pose and, started at the true parameters, drifts
2-3x further (Adam's first steps have size ``lr`` whatever the gradient), so the depth
comes from :func:`init_translation`, not from the optimiser.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from annotator.body.joints import get_convention
from annotator.body.prior import pose_prior_loss
from annotator.config import SmplifyConfig
from annotator.fitting.keypoints import convention_keypoints
from annotator.fitting.priors import angle_prior, gmof, pose_l2_prior, shape_prior
from annotator.geometry.cameras import perspective_projection
from annotator.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

TORSO_JOINTS = ("left_shoulder", "right_shoulder", "left_hip", "right_hip")
"""Joints of the camera stage (SPIN: shoulders and hips)."""
TORSO_SEGMENTS = (("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"))
"""Shoulder-hip segments used for the similar-triangles depth: their length barely changes
with yaw, arm or leg pose (shoulder width would shrink in a side view)."""
UPRIGHT_FACING_CAMERA = (math.pi, 0.0, 0.0)
"""Mean-init global orientation: 180 deg about x turns the y-up model upright in the
y-down camera frame, facing the camera."""
MIN_SEGMENT_PX = 1.0
"""Lower bound on a 2D length (px) before dividing by it (coincident keypoints)."""
NUM_BODY_POSE = 69
INIT_KEYS = ("global_orient", "body_pose", "betas", "transl")


@dataclass
class FitResult:
    """Fitted parameters (camera frame) and per-sample quality of a batch."""

    global_orient: Tensor
    """(B, 3) axis-angle."""
    body_pose: Tensor
    """(B, 69) axis-angle."""
    betas: Tensor
    """(B, num_betas)."""
    transl: Tensor
    """(B, 3) metres, camera frame."""
    err2d_px: Tensor
    """(B,) mean reprojection distance (px) over joints with confidence > 0; NaN if none."""
    loss: Tensor
    """(B,) final stage-2 energy (see the module docstring)."""
    history: dict[str, Tensor] = field(default_factory=dict)
    """``camera_loss`` (camera_iters, B) and ``body_loss`` (body_iters, B): per-sample energy
    before each step."""

    def params(self) -> dict[str, Tensor]:
        """The fitted parameters as an ``init``/``params`` dict (see :func:`smplify`, :func:`fit_energy`)."""
        return {k: getattr(self, k) for k in INIT_KEYS}


def init_translation(
    keypoints_2d: Tensor,
    convention: str,
    focal: Tensor,
    principal_point: Tensor,
    body,
    betas: Tensor,
    global_orient: Tensor | None = None,
    body_pose: Tensor | None = None,
) -> Tensor:
    """``(B, 3)`` camera translation placing the body over its 2D keypoints (similar triangles).

    Depth of the visible keypoints' centroid ``d = f * L3 / L2`` with ``L3``/``L2`` the summed
    3D/2D lengths of the visible shoulder-hip segments (SPIN's ``estimate_translation``
    idea); without a visible segment the RMS spread of the visible joints replaces the
    lengths, and with fewer than two visible joints the body is assumed to span the image
    height (``2 * principal_point_y``). ``t_xy`` then puts that centroid on the 2D
    centroid. ``global_orient``/``body_pose`` default to the upright mean pose facing the
    camera. Inputs as in :func:`smplify`.
    """
    kps, conf = _split_keypoints(keypoints_2d, convention, body)
    b, dev, dt = kps.shape[0], kps.device, kps.dtype
    focal, principal_point = _check_camera(focal, principal_point, b, kps)
    if global_orient is None:
        global_orient = torch.tensor(UPRIGHT_FACING_CAMERA, dtype=dt, device=dev).expand(b, 3)
    if body_pose is None:
        body_pose = torch.zeros(b, NUM_BODY_POSE, dtype=dt, device=dev)
    with torch.no_grad():
        model, _ = convention_keypoints(body, convention)(global_orient.to(kps), body_pose.to(kps), betas.to(kps),
                                                          torch.zeros(b, 3, dtype=dt, device=dev))
    return _similar_triangles(kps, conf, model, convention, focal, principal_point)


def _similar_triangles(kps: Tensor, conf: Tensor, model: Tensor, convention: str, focal: Tensor,
                       principal_point: Tensor) -> Tensor:
    conv = get_convention(convention)
    vis = (conf > 0).to(kps.dtype)
    n_vis = vis.sum(dim=1)
    # torso segments
    l2 = torch.zeros_like(focal)
    l3 = torch.zeros_like(focal)
    for a_name, b_name in TORSO_SEGMENTS:
        a, c = conv.index(a_name), conv.index(b_name)
        ok = vis[:, a] * vis[:, c]
        l2 = l2 + ok * (kps[:, a] - kps[:, c]).norm(dim=-1)
        l3 = l3 + ok * (model[:, a] - model[:, c]).norm(dim=-1)
    has_torso = l2 >= MIN_SEGMENT_PX
    # RMS spread of the visible joints (2D, and the model's in the image plane)
    w = vis / n_vis.clamp(min=1)[:, None]
    c2 = (w[..., None] * kps).sum(dim=1)
    c3 = (w[..., None] * model).sum(dim=1)
    s2 = ((w * (kps - c2[:, None]).pow(2).sum(-1)).sum(1)).sqrt()
    s3 = ((w * (model[..., :2] - c3[:, None, :2]).pow(2).sum(-1)).sum(1)).sqrt()
    has_spread = (n_vis >= 2) & (s2 >= MIN_SEGMENT_PX)
    height = model[..., 1].amax(dim=1) - model[..., 1].amin(dim=1)
    depth = torch.where(
        has_torso, focal * l3 / l2.clamp(min=MIN_SEGMENT_PX),
        torch.where(has_spread, focal * s3 / s2.clamp(min=MIN_SEGMENT_PX),
                    focal * height / (2.0 * principal_point[:, 1])),
    )
    c2 = torch.where((n_vis > 0)[:, None], c2, principal_point)
    t_xy = (c2 - principal_point) / focal[:, None] * depth[:, None] - c3[:, :2]
    return torch.cat([t_xy, (depth - c3[:, 2])[:, None]], dim=-1)


def smplify(
    body,
    keypoints_2d: Tensor,
    convention: str,
    focal: Tensor,
    principal_point: Tensor,
    init: dict[str, Tensor] | None,
    cfg: SmplifyConfig,
    vposer=None,
) -> FitResult:
    """Fit the body to ``keypoints_2d`` ``(B, K, 3)`` (full-image px + confidence) of ``convention``.

    ``focal`` ``(B,)`` px, ``principal_point`` ``(B, 2)`` px. ``init``: any of
    ``global_orient`` (B, 3), ``body_pose`` (B, 69), ``betas`` (B, num_betas), ``transl``
    (B, 3); missing ones start at the upright mean pose facing the camera, zero betas, and
    :func:`init_translation`. ``vposer`` (eval mode, on the inputs' device) gives the pose
    prior; ``None`` uses an L2 on the body pose. Runs on the device of ``keypoints_2d``
    (the body model must be there too) in chunks of ``cfg.batch_size``; ``cfg.init`` is
    for the caller (which init to pass) and is not read here. Works inside
    ``torch.no_grad``/``inference_mode`` blocks.
    """
    kps, conf = _split_keypoints(keypoints_2d, convention, body)
    b = kps.shape[0]
    if b == 0:
        raise ValueError("smplify: empty batch (keypoints_2d has 0 rows)")
    init = _check_init(init or {}, b, body.num_betas, kps)
    focal, principal_point = _check_camera(focal, principal_point, b, kps)
    _check_vposer(vposer, kps)
    chunks = []
    with torch.inference_mode(False), torch.enable_grad():
        for start in range(0, b, cfg.batch_size):
            sl = slice(start, start + cfg.batch_size)
            chunks.append(_fit_chunk(body, kps[sl].clone(), conf[sl].clone(), convention, focal[sl].clone(),
                                     principal_point[sl].clone(), {k: v[sl].clone() for k, v in init.items()},
                                     cfg, vposer))
    if len(chunks) == 1:
        return chunks[0]
    cat = {k: torch.cat([getattr(c, k) for c in chunks]) for k in
           ("global_orient", "body_pose", "betas", "transl", "err2d_px", "loss")}
    history = {k: torch.cat([c.history[k] for c in chunks], dim=1) for k in chunks[0].history}
    return FitResult(**cat, history=history)


def fit_energy(body, keypoints_2d: Tensor, convention: str, focal: Tensor, principal_point: Tensor,
               params: dict[str, Tensor], cfg: SmplifyConfig, vposer=None) -> dict[str, Tensor]:
    """Stage-2 energy terms ``(B,)`` of given parameters (all four keys of ``init``).

    Keys: ``reprojection``, ``pose_prior``, ``angle_prior``, ``shape_prior`` (weighted),
    ``total``, and ``err2d_px`` (mean px distance over joints with confidence > 0). Lets a
    caller compare a network prediction with a fit, as SPIN does before updating its fits.
    """
    kps, conf = _split_keypoints(keypoints_2d, convention, body)
    params = _check_init(params, kps.shape[0], body.num_betas, kps)
    missing = [k for k in INIT_KEYS if k not in params]
    if missing:
        raise KeyError(f"fit_energy: params lacks {missing}")
    focal, principal_point = _check_camera(focal, principal_point, kps.shape[0], kps)
    _check_vposer(vposer, kps)
    model = convention_keypoints(body, convention)
    return _body_energy(model, params["global_orient"], params["body_pose"], params["betas"],
                        params["transl"], kps, conf, focal, principal_point, cfg, vposer)


# --------------------------------------------------------------------------- internals


def _fit_chunk(body, kps, conf, convention, focal, pp, init, cfg, vposer) -> FitResult:
    b, dev, dt = kps.shape[0], kps.device, kps.dtype
    model = convention_keypoints(body, convention)
    mean_orient = "global_orient" not in init
    orient = init.get("global_orient", torch.tensor(UPRIGHT_FACING_CAMERA, dtype=dt, device=dev).expand(b, 3))
    pose = init.get("body_pose", torch.zeros(b, NUM_BODY_POSE, dtype=dt, device=dev))
    betas = init.get("betas", torch.zeros(b, body.num_betas, dtype=dt, device=dev))
    with torch.no_grad():
        rest_kps, rest_joints = model(torch.zeros_like(orient), pose, betas, torch.zeros_like(orient))
    root = rest_joints[:, 0]
    transl = init.get("transl")
    if transl is None:
        cam_kps = _rigid(rest_kps, root, orient, torch.zeros_like(orient))
        transl = _similar_triangles(kps, conf, cam_kps, convention, focal, pp)

    orient, transl, cam_hist = _camera_stage(rest_kps, root, kps, conf, convention, focal, pp, orient, transl,
                                             cfg, try_flip=mean_orient)
    params, body_hist = _body_stage(model, kps, conf, focal, pp, orient, pose, betas, transl, cfg, vposer)
    with torch.no_grad():
        terms = _body_energy(model, *params, kps, conf, focal, pp, cfg, vposer)
    return FitResult(*params, err2d_px=terms["err2d_px"], loss=terms["total"],
                     history={"camera_loss": cam_hist, "body_loss": body_hist})


def _rigid(rest_kps: Tensor, root: Tensor, orient: Tensor, transl: Tensor) -> Tensor:
    """SMPL's global rigid motion of rest-orientation keypoints: ``R (x - J0) + J0 + t``."""
    rot = axis_angle_to_matrix(orient)
    return (rest_kps - root[:, None]) @ rot.transpose(-1, -2) + (root + transl)[:, None]


def _adam_steps(params: list[Tensor], energy, iters: int, lr: float) -> Tensor:
    """``iters`` Adam steps on ``energy() -> (B,)``; returns the (iters, B) energies before each step."""
    opt = torch.optim.Adam(params, lr=lr)
    history = []
    for _ in range(iters):
        per_sample = energy()
        grads = torch.autograd.grad(per_sample.sum(), params)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        history.append(per_sample.detach())
    if not history:
        return torch.zeros(0, params[0].shape[0], dtype=params[0].dtype, device=params[0].device)
    return torch.stack(history)


def _camera_stage(rest_kps, root, kps, conf, convention, focal, pp, orient, transl, cfg, try_flip):
    conv = get_convention(convention)
    torso = torch.zeros(conv.num_joints, dtype=kps.dtype, device=kps.device)
    torso[[conv.index(n) for n in TORSO_JOINTS]] = 1.0
    weight = conf.pow(2) * torso
    no_torso = (weight > 0).sum(dim=1) == 0
    weight = torch.where(no_torso[:, None], conf.pow(2), weight)

    candidates = [orient]
    if try_flip:  # the same body turned 180 deg about its own vertical axis
        flip = torch.tensor([0.0, math.pi, 0.0], dtype=kps.dtype, device=kps.device)
        candidates.append(matrix_to_axis_angle(axis_angle_to_matrix(orient) @ axis_angle_to_matrix(flip)))
    n = len(candidates)

    def rep(x):  # repeat per candidate: (n * B, ...)
        return x.repeat(n, *([1] * (x.dim() - 1)))

    r_kps, r_root, r_t0, r_kp, r_w, r_f, r_pp = map(rep, (rest_kps, root, transl, kps, weight, focal, pp))
    rot = torch.cat(candidates).clone().requires_grad_(True)
    t = r_t0.clone().requires_grad_(True)

    def energy():
        x = _rigid(r_kps, r_root, rot, t)
        proj = perspective_projection(x, r_f, r_pp)
        return (r_w * (proj - r_kp).pow(2).sum(-1)).sum(-1)

    hist = _adam_steps([rot, t], energy, cfg.camera_iters, cfg.lr)
    with torch.no_grad():
        final = energy().reshape(n, -1)
        best = final.argmin(dim=0)  # ties -> first candidate (the given orientation)
        ar = torch.arange(best.shape[0], device=best.device)
        orient = rot.detach().reshape(n, -1, 3)[best, ar]
        transl = t.detach().reshape(n, -1, 3)[best, ar]
        b = best.shape[0]  # (camera_iters 0: an empty history, no stage)
        hist = hist.reshape(hist.shape[0], n, b)[:, best, ar]
    return orient, transl, hist


def _body_stage(model, kps, conf, focal, pp, orient, pose, betas, transl, cfg, vposer):
    params = [x.clone().requires_grad_(True) for x in (orient, pose, betas, transl)]

    def energy():
        return _body_energy(model, *params, kps, conf, focal, pp, cfg, vposer)["total"]

    hist = _adam_steps(params, energy, cfg.body_iters, cfg.lr)
    return tuple(p.detach() for p in params), hist


def _body_energy(model, orient, pose, betas, transl, kps, conf, focal, pp, cfg, vposer) -> dict[str, Tensor]:
    keypoints, _ = model(orient, pose, betas, transl)
    proj = perspective_projection(keypoints, focal, pp)
    residual = proj - kps
    reproj = (conf.pow(2) * gmof(residual, cfg.sigma_px).sum(-1)).sum(-1)
    prior = pose_l2_prior(pose) if vposer is None else pose_prior_loss(vposer, pose)
    terms = {
        "reprojection": reproj,
        "pose_prior": cfg.pose_prior_weight ** 2 * prior,
        "angle_prior": cfg.angle_prior_weight ** 2 * angle_prior(pose),
        "shape_prior": cfg.shape_prior_weight ** 2 * shape_prior(betas),
    }
    terms["total"] = sum(terms.values())
    vis = (conf > 0).to(kps.dtype)
    dist = residual.detach().norm(dim=-1)
    n_vis = vis.sum(-1)
    terms["err2d_px"] = torch.where(n_vis > 0, (dist * vis).sum(-1) / n_vis.clamp(min=1),
                                    torch.full_like(n_vis, math.nan))
    return terms


def _split_keypoints(keypoints_2d: Tensor, convention: str, body) -> tuple[Tensor, Tensor]:
    """``(B, K, 3)`` -> finite ``(B, K, 2)`` px and ``(B, K)`` confidence (0 where non-finite/negative),
    in the body model's dtype; the body model must be on the keypoints' device."""
    conv = get_convention(convention)
    if keypoints_2d.dim() != 3 or keypoints_2d.shape[1:] != (conv.num_joints, 3):
        raise ValueError(f"keypoints_2d: expected (B, {conv.num_joints}, 3) for convention {convention!r} "
                         f"(x px, y px, confidence), got {tuple(keypoints_2d.shape)}")
    ref = body.smpl.v_template
    if ref.device != keypoints_2d.device:
        raise ValueError(f"keypoints_2d is on {keypoints_2d.device} but the body model is on {ref.device}; "
                         "move the body model to the inputs' device")
    keypoints_2d = keypoints_2d.to(ref.dtype)
    kps = keypoints_2d[..., :2]
    finite = torch.isfinite(keypoints_2d).all(dim=-1)
    conf = torch.where(finite, keypoints_2d[..., 2].clamp(min=0), torch.zeros_like(keypoints_2d[..., 2]))
    kps = torch.where(finite[..., None], kps, torch.zeros_like(kps))
    return kps, conf


def _check_init(init: dict[str, Tensor], b: int, num_betas: int, like: Tensor) -> dict[str, Tensor]:
    shapes = {"global_orient": 3, "body_pose": NUM_BODY_POSE, "betas": num_betas, "transl": 3}
    unknown = sorted(set(init) - set(shapes))
    if unknown:
        raise KeyError(f"init: unknown key(s) {unknown}; expected some of {list(INIT_KEYS)}")
    out = {}
    for key, value in init.items():
        if value is None:
            continue
        if value.dim() != 2 or value.shape != (b, shapes[key]):
            raise ValueError(f"init[{key!r}]: expected shape ({b}, {shapes[key]}), got {tuple(value.shape)}")
        if not torch.isfinite(value).all():
            rows = torch.nonzero(~torch.isfinite(value).all(dim=1)).flatten().tolist()
            raise ValueError(f"init[{key!r}]: non-finite values in row(s) {rows[:10]}")
        out[key] = value.detach().to(like)
    return out


def _check_vposer(vposer, like: Tensor) -> None:
    if vposer is None:
        return
    if vposer.training:
        raise ValueError("vposer: call vposer.eval() first (training-mode BatchNorm/dropout make the prior "
                         "depend on the batch)")
    device = next(vposer.parameters()).device
    if device != like.device:
        raise ValueError(f"vposer is on {device} but keypoints_2d is on {like.device}")


def _check_camera(focal: Tensor, pp: Tensor, b: int, like: Tensor) -> tuple[Tensor, Tensor]:
    if focal.shape != (b,):
        raise ValueError(f"focal: expected shape ({b},), got {tuple(focal.shape)}")
    if pp.shape != (b, 2):
        raise ValueError(f"principal_point: expected shape ({b}, 2), got {tuple(pp.shape)}")
    if not (focal > 0).all():
        rows = torch.nonzero(~(focal > 0)).flatten().tolist()
        raise ValueError(f"focal: must be > 0 (rows {rows[:10]})")
    return focal.to(like), pp.to(like)
