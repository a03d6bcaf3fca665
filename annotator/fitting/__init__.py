"""Per-sample optimisation baselines: SMPLify in batch (``method: smplify``).

See :mod:`annotator.fitting.smplify` for the method, :mod:`annotator.fitting.priors` for
the energy terms and :mod:`annotator.fitting.keypoints` for the fast, exact keypoint path.
Note: ``annotator.fitting.smplify`` names the function here; the module is reachable as
``sys.modules["annotator.fitting.smplify"]`` or through ``from annotator.fitting.smplify import ...``.
"""
from annotator.fitting.keypoints import ConventionKeypoints, convention_keypoints
from annotator.fitting.priors import angle_prior, angle_prior_terms, gmof, pose_l2_prior, shape_prior
from annotator.fitting.smplify import FitResult, fit_energy, init_translation, smplify

__all__ = [
    "ConventionKeypoints",
    "FitResult",
    "angle_prior",
    "angle_prior_terms",
    "convention_keypoints",
    "fit_energy",
    "gmof",
    "init_translation",
    "pose_l2_prior",
    "shape_prior",
    "smplify",
]
