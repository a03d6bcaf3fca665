"""The one place per method (annotator.methods): what each method runs, counts and is called."""
from __future__ import annotations

import pytest

from annotator.config import STEPS, JobConfig
from annotator.evaluation.reports import ANNOTATION_STEPS
from annotator.methods import METHOD_NAMES, METHODS
from annotator.run import plan_steps

BASE = {"name": "j", "datasets": [{"name": "t", "format": "coco", "role": "target", "path": "x.json", "images": "i"},
                                  {"name": "e", "format": "spin_npz", "role": "eval3d", "path": "e.npz", "images": "i"}]}


def _cfg(**extra) -> JobConfig:
    return JobConfig.model_validate({**BASE, **extra})


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_is_consistent(name):
    m = METHODS[name]
    assert set(m.skips) <= set(STEPS) and set(m.annotation_steps) <= set(STEPS)
    assert m.reinfer_from not in m.skips and "reinfer" in m.annotation_steps
    steps = plan_steps(_cfg(method=name))
    assert not set(m.skips) & set(steps)
    assert ANNOTATION_STEPS[name] == m.annotation_steps
    assert _cfg(method=name).method_label.startswith(name)


def test_plans():
    assert plan_steps(_cfg()) == ["manifest", "train-pose-prior", "pretrain", "predict-prior", "finetune", "reinfer",
                                  "train-estimator", "evaluate", "report"]
    assert plan_steps(_cfg(lifter={"enabled": True}))[1:3] == ["train-pose-prior", "train-lifter"]
    assert plan_steps(_cfg(method="lifter")) == ["manifest", "train-lifter", "reinfer", "train-estimator", "evaluate",
                                                 "report"]
    assert "train-lifter" in plan_steps(_cfg(method="smplify", smplify={"init": "lifter"}))
    assert "finetune" not in plan_steps(_cfg(method="smplify"))
    no_eval = JobConfig.model_validate({**BASE, "datasets": BASE["datasets"][:1]})
    assert "evaluate" not in plan_steps(no_eval) and "train-estimator" not in plan_steps(no_eval)


def test_labels():
    assert _cfg(method="smplify", smplify={"init": "lifter"}).method_label == "smplify-lifter-init"
    assert _cfg(network={"use_bbox_info": False}).method_label == "cliff-no-bbox"
    assert _cfg(method="prior", pretrain={"reprojection": "crop"}).method_label == "prior-crop-loss"
    assert _cfg(finetune={"use_prior_reg": False}).method_label == "cliff-no-prior-reg"
    assert _cfg(method="lifter", network={"use_bbox_info": False}).method_label == "lifter"


def test_an_unknown_method_names_the_choices():
    with pytest.raises(Exception, match="lifter"):
        _cfg(method="spin")
