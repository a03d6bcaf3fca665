"""The one place that says what each annotation method runs.

A :class:`Method` names the pipeline steps the method does without, the steps whose time is
its annotation time, which step's output the ``reinfer`` step predicts with, and what the
predictor does per batch. The job driver (:func:`annotator.run.plan_steps`), the reports'
annotation time, the config's method label and the inference step all read it from here;
a new method is one entry.

=========== ===============================================================================
``cliff``   pretrain -> predict-prior -> finetune (prior regularisation) -> reinfer
``prior``   the pretrained network's predictions (CLIFF's "no finetune" ablation)
``smplify`` SMPLify per instance from the pretrained network / mean pose / lifter (``smplify.init``)
``lifter``  the 2D-keypoint lifter alone (no image network)
``spin``    pretrain -> train-spin (SPIN: SMPLify in the training loop, a dictionary of the best
            fits) -> reinfer; the final dictionary is written too (``fits/``, ``<label>-fits``)
=========== ===============================================================================

``second_round.enabled`` adds NeuralAnnot's second round to any method (supp. Sec. 8): a fresh
network trained on aux3d + the method's pseudo-GT (step ``train-second-round``, the indirect
estimator's recipe), whose re-inferred targets (``reinfer-second-round``) become the pseudo-GT;
the label gets ``-2nd`` and the first round's pseudo-GT is kept in ``first_round/``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Method:
    name: str
    skips: tuple[str, ...]
    """Pipeline steps this method never runs."""
    annotation_steps: tuple[str, ...]
    """Steps whose wall time counts as the method's annotation time (those not run count 0)."""
    reinfer_from: Literal["finetune", "pretrain", "train-lifter", "train-spin"]
    """The step whose weights ``reinfer`` predicts with."""
    predictor: Literal["network", "smplify", "lifter"]
    """Per batch: the network's predictions, SMPLify fits to the 2D keypoints, or the lifter's pose."""
    description: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("cliff", ("train-spin",), ("train-pose-prior", "train-lifter", "annotate-aux", "pretrain", "predict-prior",
                                      "finetune", "reinfer"),
           "finetune", "network", "the CLIFF annotator: finetune with prior regularisation, then reinfer"),
    Method("prior", ("train-pose-prior", "finetune", "train-spin"), ("train-lifter", "annotate-aux", "pretrain", "reinfer"),
           "pretrain", "network",
           "the pretrained network's predictions (CLIFF's no-finetune ablation)"),
    Method("smplify", ("finetune", "train-spin"), ("train-pose-prior", "train-lifter", "annotate-aux", "pretrain",
                                                   "reinfer"),
           "pretrain", "smplify",
           "SPIN-style SMPLify per instance (the VPoser prior is trained; no finetune)"),
    Method("lifter", ("train-pose-prior", "annotate-aux", "pretrain", "predict-prior", "finetune", "train-spin"),
           ("train-lifter", "reinfer"), "train-lifter", "lifter", "the 2D-keypoint lifter alone: no image network"),
    Method("spin", ("finetune",), ("train-pose-prior", "train-lifter", "annotate-aux", "pretrain", "train-spin",
                                   "reinfer"),
           "train-spin", "network",
           "SPIN: the network trained with SMPLify in the loop (a dictionary of the best fits), then reinfer"),
)}
METHOD_NAMES = tuple(METHODS)
#: Methods that run SMPLify (``smplify`` settings; ``smplify.init`` says where it starts).
FITTING_METHODS = ("smplify", "spin")
#: The label suffix of the fits a method writes besides its pseudo-GT (``spin``: its final dictionary).
FITS_SUFFIX = "-fits"
#: The steps of the second round, in pipeline order; they count as annotation time of every method.
SECOND_ROUND_STEPS = ("train-second-round", "reinfer-second-round")


def uses_lifter(cfg) -> bool:
    """Whether the job needs the ``train-lifter`` step's lifter."""
    return bool(cfg.lifter.enabled or cfg.method == "lifter"
                or (cfg.method in FITTING_METHODS and cfg.smplify.init == "lifter"))


def plan_steps(cfg, steps: tuple[str, ...]) -> list[str]:
    """The job's steps (``cfg.steps`` in pipeline order ``steps``) that its method runs."""
    method = METHODS[cfg.method]
    out = [s for s in steps if s in cfg.steps and s not in method.skips]
    if not uses_lifter(cfg):
        out = [s for s in out if s != "train-lifter"]
    if cfg.aux_annotator.kind == "none":
        out = [s for s in out if s != "annotate-aux"]
    if not cfg.second_round.enabled:
        out = [s for s in out if s not in SECOND_ROUND_STEPS]
    if not cfg.datasets_with_role("eval3d"):  # the indirect error needs a held-out 3D set
        out = [s for s in out if s not in ("train-estimator", "evaluate")]
    return out


def annotation_steps(cfg) -> tuple[str, ...]:
    """Steps whose wall time counts as the job's annotation time."""
    return METHODS[cfg.method].annotation_steps + (SECOND_ROUND_STEPS if cfg.second_round.enabled else ())


def label(cfg) -> str:
    """The name reports give the job's annotator: :func:`first_round_label`, plus ``-2nd`` with
    ``second_round.enabled`` (NeuralAnnot's second round, e.g. ``cliff-2nd``)."""
    return first_round_label(cfg) + ("-2nd" if cfg.second_round.enabled else "")


def first_round_label(cfg) -> str:
    """The method plus its ablations, e.g. ``cliff``, ``cliff-no-bbox`` (HMR-style crop-only input),
    ``cliff-crop-loss`` (crop-frame reprojection loss in the step that makes the annotations),
    ``cliff-no-prior-reg``, ``smplify-lifter-init``."""
    if cfg.method == "lifter":  # no image network, no ablation applies
        return "lifter"
    out = cfg.method
    if cfg.method in FITTING_METHODS and cfg.smplify.init == "lifter":
        out += "-lifter-init"
    if not cfg.network.use_bbox_info:
        out += "-no-bbox"
    annotating = {"finetune": cfg.finetune, "train-spin": cfg.spin}.get(METHODS[cfg.method].reinfer_from, cfg.pretrain)
    if annotating.reprojection == "crop":
        out += "-crop-loss"
    if cfg.method == "cliff" and not cfg.finetune.use_prior_reg:
        out += "-no-prior-reg"
    return out


def fits_label(cfg) -> str | None:
    """The ``method`` column of the fits the job writes besides its pseudo-GT (``fits/``), or None."""
    return first_round_label(cfg) + FITS_SUFFIX if cfg.method == "spin" else None


__all__ = ["Method", "METHODS", "METHOD_NAMES", "FITTING_METHODS", "FITS_SUFFIX", "fits_label", "SECOND_ROUND_STEPS", "plan_steps", "annotation_steps", "label",
           "first_round_label", "uses_lifter"]
