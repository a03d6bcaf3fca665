"""Body models: one SMPL-format :class:`BodyModel` (smplx underneath) for the open
anny-built model and for a user's SMPL file. See :mod:`annotator.body.model`."""
from annotator.body.joints import LANDMARK_NAMES, SMPL_JOINT_NAMES, SMPL_PARENTS
from annotator.body.model import BodyModel, BodyOutput, load_body_model

__all__ = ["BodyModel", "BodyOutput", "load_body_model", "SMPL_JOINT_NAMES", "SMPL_PARENTS", "LANDMARK_NAMES"]
