"""Steps ``train-estimator`` and ``evaluate``: the indirect error of the pseudo-GT.

NeuralAnnot (Sec. 5) judges pseudo-GT by what it is for: an estimator g of the same
architecture is trained from scratch on the 3D-labelled ``aux3d`` data plus the targets'
pseudo-GT with full supervision, then tested on a held-out 3D set (``eval3d``: synthetic
``wild3d``, or 3DPW when the user has it). Better pseudo-GT gives a lower test error.

* ``train-estimator`` is a Ray Train step like pretrain (:func:`annotator.steps.train.run_training`),
  settings in ``estimator:``; checkpoints under ``checkpoints/train-estimator/``.
* ``evaluate`` runs g over every ``eval3d`` manifest row with the inference pipeline of
  ``reinfer`` (:func:`annotator.steps.infer.infer_datasets`) into ``evaluation/<dataset>/``
  (same pseudo-GT schema, ``method = "estimator"``). The report step turns those
  predictions into MPJPE / PA-MPJPE / PVE against the set's 3D truth.
"""
from __future__ import annotations

from annotator.steps.base import StepContext

ESTIMATOR_METHOD = "estimator"
"""``method`` column of the estimator's predictions on the eval3d sets."""


def run_train_estimator(ctx: StepContext) -> dict:
    from annotator.steps.train import run_training

    out = run_training(ctx, "train-estimator")
    out["trained_on"] = {"aux3d": [d.name for d in ctx.datasets("aux3d")],
                         "pseudo_gt": [d.name for d in ctx.datasets("target")],
                         "pseudo_gt_method": ctx.cfg.method_label}
    return out


def run_evaluate(ctx: StepContext) -> dict:
    from annotator.steps.infer import infer_datasets

    eval_sets = ctx.datasets("eval3d")
    if not eval_sets:
        return {"datasets": {}, "note": "no eval3d dataset present"}
    manifest = ctx.result("manifest")["datasets"]
    shards = {d.name: manifest[d.name]["shards"] for d in eval_sets}
    weights = ctx.result("train-estimator")["weights"]
    out = infer_datasets(ctx, "evaluate", shards, weights, ctx.layout.evaluation, ESTIMATOR_METHOD)
    return {**out, "weights": weights, "method": ESTIMATOR_METHOD}
