"""The CLIFF annotator network, its output decoding and its training losses.

* :class:`CliffNet` (``cliff.py``): ResNet + bbox info -> SMPL rotations, betas, crop camera.
* :func:`decode` (``outputs.py``): predictions -> axis-angle SMPL, full-frame translation,
  3D keypoints and their full-image / crop projections.
* :func:`compute_losses` (``losses.py``): every training loss, weighted per step.
"""
from annotator.model.cliff import CliffNet, WeightsError, load_weights, mean_parameters
from annotator.model.losses import compute_losses
from annotator.model.outputs import decode

__all__ = ["CliffNet", "WeightsError", "compute_losses", "decode", "load_weights", "mean_parameters"]
