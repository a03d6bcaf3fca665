"""SPIN's fitting in the loop (Kolotouros et al. 2019, Sec. 3.5 and supp.): the per-sample
dictionary of the best fits so far, and one batched SMPLify run started from the network.

Every training batch of ``method: spin`` (:class:`annotator.steps.trainer.Trainer`):

1. the network's predictions of the batch's target rows start a batched SMPLify
   (:func:`fit_from_network`: Adam, ``smplify.lr``, ``spin.fit_iters`` <= 50 iterations of
   the body stage, full-frame reprojection with the rows' known focal length);
2. :meth:`FitDictionary.update` keeps, per row, the fit with the lower 2D error;
3. the network is supervised by the dictionary's SMPL parameters and their 3D joints
   (rows :meth:`FitDictionary.usable` only), plus the 2D keypoint loss.

The dictionary lives in the training worker (one entry per target row, in the frame of the
un-augmented image: the step allows only augmentation that keeps that frame, see
:class:`annotator.config.SpinConfig`), goes into every checkpoint, and is what a restarted
worker continues from. With several workers each rank updates the rows of its own share of
the epoch (every row goes to exactly one rank per epoch), and :meth:`FitDictionary.merge`
takes the lowest-error entry per row across ranks at the end of each epoch.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from annotator.config import SmplifyConfig
from annotator.fitting.smplify import FitResult, INIT_KEYS, smplify

PARAM_KEYS = INIT_KEYS  # global_orient, body_pose, betas, transl


@dataclass
class FitDictionary:
    """The best fit so far of every row of the step's main (target) set, by row index."""

    sample_id: list[str]
    params: dict[str, Tensor]
    """``global_orient`` (N, 3), ``body_pose`` (N, 69), ``betas`` (N, nb), ``transl`` (N, 3)."""
    err2d_px: Tensor
    """(N,) mean 2D distance of the entry's keypoints to the labels; NaN: no usable fit."""
    box_size: Tensor
    """(N,) the rows' box side (px): the skip rule's unit."""
    updates: Tensor
    """(N,) how many times the entry was replaced since the initial fit (the fault test's count)."""

    @classmethod
    def from_fit(cls, sample_id, fit: FitResult, box_size: Tensor) -> "FitDictionary":
        """The initial dictionary: SMPLify's static fits (``method: smplify``'s own) of every row."""
        params = {k: v.detach().float().cpu() for k, v in fit.params().items()}
        return cls([str(s) for s in sample_id], params, fit.err2d_px.detach().float().cpu(),
                   box_size.detach().float().cpu(), torch.zeros(len(sample_id), dtype=torch.long))

    def __post_init__(self) -> None:
        self._row = {s: i for i, s in enumerate(self.sample_id)}  # sample_id -> row, built once

    def __len__(self) -> int:
        return len(self.sample_id)

    def update(self, index: Tensor, fit: FitResult) -> Tensor:
        """Replace the entries ``index`` whose new fit has a lower 2D error (SPIN: a new fit
        replaces the old only when it is better). Returns the (len(index),) replaced mask."""
        index = index.cpu()
        new = fit.err2d_px.detach().float().cpu()
        old = self.err2d_px[index]
        better = torch.isfinite(new) & (~torch.isfinite(old) | (new < old))
        rows = index[better]
        for k in PARAM_KEYS:
            self.params[k][rows] = getattr(fit, k).detach().float().cpu()[better]
        self.err2d_px[rows] = new[better]
        self.updates[rows] += 1
        return better

    def usable(self, index: Tensor, max_err2d_norm: float, max_abs_beta: float) -> Tensor:
        """Entries that supervise the network (the skip rule, see :class:`annotator.config.SpinConfig`):
        a finite fit whose 2D error is at most ``max_err2d_norm`` of the box side and whose shape
        is not extreme (every ``|beta| <= max_abs_beta``)."""
        index = index.cpu()
        err = self.err2d_px[index] / self.box_size[index].clamp_min(1.0)
        finite = torch.stack([torch.isfinite(self.params[k][index]).all(1) for k in PARAM_KEYS]).all(0)
        shape_ok = self.params["betas"][index].abs().amax(1) <= max_abs_beta
        return finite & torch.isfinite(err) & (err <= max_err2d_norm) & shape_ok

    def take(self, index: Tensor, device) -> dict[str, Tensor]:
        return {k: self.params[k][index.cpu()].to(device) for k in PARAM_KEYS}

    def merge(self, others: list["FitDictionary"]) -> None:
        """Keep, per row, the lowest-error entry of this and ``others`` (the other ranks' copies)."""
        for other in others:
            if other.sample_id != self.sample_id:
                raise ValueError("FitDictionary.merge: the ranks' dictionaries hold different rows")
            new, old = other.err2d_px, self.err2d_px
            better = torch.isfinite(new) & (~torch.isfinite(old) | (new < old))
            for k in PARAM_KEYS:
                self.params[k][better] = other.params[k][better]
            self.err2d_px[better] = new[better]
            self.updates = torch.maximum(self.updates, other.updates)

    def checksum(self) -> str:
        """A digest of the entries (the fault test compares a resumed dictionary with a checkpoint's)."""
        h = hashlib.sha256()
        for k in PARAM_KEYS:
            h.update(self.params[k].numpy().tobytes())
        h.update(self.err2d_px.numpy().tobytes())
        return h.hexdigest()[:16]

    def state_dict(self) -> dict:
        return {"sample_id": list(self.sample_id), "params": dict(self.params), "err2d_px": self.err2d_px,
                "box_size": self.box_size, "updates": self.updates}

    @classmethod
    def from_state(cls, state: dict) -> "FitDictionary":
        return cls(list(state["sample_id"]), {k: state["params"][k].clone() for k in PARAM_KEYS},
                   state["err2d_px"].clone(), state["box_size"].clone(), state["updates"].clone())

    def lookup(self, sample_ids) -> tuple[np.ndarray, np.ndarray]:
        """Row index of each of ``sample_ids`` and whether it is in the dictionary."""
        idx = np.array([self._row.get(str(s), -1) for s in sample_ids], dtype=np.int64)
        return np.maximum(idx, 0), idx >= 0


def loop_fit_config(smplify_cfg: SmplifyConfig, fit_iters: int) -> SmplifyConfig:
    """The in-the-loop SMPLify: the job's SMPLify settings, started from the network's camera
    (no camera stage) with ``fit_iters`` body-stage iterations (SPIN: at most 50)."""
    return smplify_cfg.model_copy(update={"camera_iters": 0, "body_iters": fit_iters})


def fit_from_network(body, decoded: dict[str, Tensor], batch: dict[str, Tensor], cfg: SmplifyConfig,
                     convention: str, vposer=None) -> FitResult:
    """Batched SMPLify of a batch's rows started from the network's decoded predictions
    (``global_orient``, ``body_pose``, ``betas``, full-frame ``transl``), on their device."""
    init = {k: decoded[k].detach().float() for k in PARAM_KEYS}
    with torch.autocast(device_type=batch["keypoints_2d"].device.type, enabled=False):
        return smplify(body, batch["keypoints_2d"].float(), convention, batch["focal"].float(),
                       batch["principal_point"].float(), init, cfg, vposer=vposer)


__all__ = ["FitDictionary", "PARAM_KEYS", "loop_fit_config", "fit_from_network"]
