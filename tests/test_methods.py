"""The one place per method (annotator.methods): what each method runs, counts and is called."""
from __future__ import annotations

import pytest

from annotator.config import STEPS, JobConfig
from annotator.methods import METHOD_NAMES, METHODS, SECOND_ROUND_STEPS, annotation_steps
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
    assert annotation_steps(_cfg(method=name)) == m.annotation_steps
    assert annotation_steps(_cfg(method=name, second_round=True)) == m.annotation_steps + SECOND_ROUND_STEPS
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


def test_second_round_plan_and_label():
    """NeuralAnnot's second round: two more steps after reinfer, the label gets -2nd; off, nothing changes."""
    cfg = _cfg(second_round=True)
    assert cfg.second_round.enabled and cfg.second_round.epochs == 5
    assert plan_steps(cfg) == ["manifest", "train-pose-prior", "pretrain", "predict-prior", "finetune", "reinfer",
                               "train-second-round", "reinfer-second-round", "train-estimator", "evaluate", "report"]
    assert cfg.method_label == "cliff-2nd"
    assert _cfg(method="smplify", second_round={"enabled": True, "lr": 1e-3}).method_label == "smplify-2nd"
    assert not set(SECOND_ROUND_STEPS) & set(plan_steps(_cfg(second_round={"lr": 1e-3})))
    assert _cfg(second_round=False).method_label == "cliff"


def test_labels():
    assert _cfg(method="smplify", smplify={"init": "lifter"}).method_label == "smplify-lifter-init"
    assert _cfg(network={"use_bbox_info": False}).method_label == "cliff-no-bbox"
    assert _cfg(method="prior", pretrain={"reprojection": "crop"}).method_label == "prior-crop-loss"
    assert _cfg(finetune={"use_prior_reg": False}).method_label == "cliff-no-prior-reg"
    assert _cfg(method="lifter", network={"use_bbox_info": False}).method_label == "lifter"


def test_an_unknown_method_names_the_choices():
    with pytest.raises(Exception, match="lifter") as err:
        _cfg(method="hmr")
    assert "spin" in str(err.value)


def test_spin_plan_labels_and_settings():
    """SPIN in the loop: train-spin replaces finetune, only for method spin; its fits get their own label."""
    from annotator.methods import fits_label, uses_lifter

    cfg = _cfg(method="spin")
    assert plan_steps(cfg) == ["manifest", "train-pose-prior", "pretrain", "predict-prior", "train-spin", "reinfer",
                               "train-estimator", "evaluate", "report"]
    assert all("train-spin" not in plan_steps(_cfg(method=m)) for m in METHOD_NAMES if m != "spin")
    assert cfg.method_label == "spin" and fits_label(cfg) == "spin-fits" and fits_label(_cfg()) is None
    lifted = _cfg(method="spin", smplify={"init": "lifter"})  # the dictionary starts from the lifter's fits
    assert uses_lifter(lifted) and "train-lifter" in plan_steps(lifted)
    assert lifted.method_label == "spin-lifter-init" and fits_label(lifted) == "spin-lifter-init-fits"
    assert cfg.spin.fit_iters == 50
    with pytest.raises(Exception, match="fit_iters"):
        _cfg(method="spin", spin={"fit_iters": 51})  # SPIN: at most 50 iterations per batch
    with pytest.raises(Exception, match="flip_prob"):  # the dictionary is kept in the image frame
        _cfg(method="spin", spin={"augment": {"enabled": True}})
    ok = _cfg(method="spin", spin={"augment": {"enabled": True, "flip_prob": 0, "rotation_prob": 0}})
    assert ok.spin.augment.enabled
