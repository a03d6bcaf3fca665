"""Steps ``train-second-round`` and ``reinfer-second-round``: NeuralAnnot's second round (supp. Sec. 8).

With ``second_round.enabled``, ``reinfer`` writes the first round's pseudo-GT to ``first_round/``.
``train-second-round`` then trains a fresh network of the annotator's architecture from scratch
(with ``lifter.enabled`` its regressor starts from the frozen 2D-keypoint lifter's pose, as
pretrain's does), fully supervised on ``aux3d`` + that pseudo-GT - the indirect-error estimator's
recipe (:func:`annotator.steps.train.run_training`, rows joined by ``attach_pseudo_gt``), settings
in ``second_round:`` - and ``reinfer-second-round`` predicts every target row with it into
``pseudo_gt/`` (label ``<method>-2nd``). Reports score both rounds (outputs ``first_round`` and
``final``); the indirect estimator trains on the second round's pseudo-GT.
"""
from __future__ import annotations

from annotator.steps.base import StepContext

TRAIN_STEP = "train-second-round"
REINFER_STEP = "reinfer-second-round"


def run_train_second_round(ctx: StepContext) -> dict:
    from annotator.steps.train import run_training

    out = run_training(ctx, TRAIN_STEP)
    out["trained_on"] = {"aux3d": [d.name for d in ctx.datasets("aux3d")],
                         "first_round": [d.name for d in ctx.datasets("target")]}
    return out


def run_reinfer_second_round(ctx: StepContext) -> dict:
    from annotator.steps.infer import infer_datasets, target_shards

    shards = target_shards(ctx)
    weights = ctx.result(TRAIN_STEP)["weights"]
    label = ctx.cfg.method_label
    return {**infer_datasets(ctx, REINFER_STEP, shards, weights, ctx.layout.pseudo_gt, "network", label=label),
            "weights": weights, "method": label}
