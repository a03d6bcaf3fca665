"""``annotator bench quality``: the annotators of the papers compared on one synthetic world.

A seeded synthetic world - ``lab`` (Human3.6M-like, 3D truth) to pretrain, ``wild``
(COCO-like, annotated in 2D only) to annotate, ``wild3d`` (3DPW-like) for the indirect
test - is annotated by every method and ablation with the real pipeline
(:func:`annotator.run.run_job` on a local Ray), and each one's pseudo-GT of ``wild`` is
scored against the world's hidden 3D truth on the same instances:

======================  ==================================================================
``cliff``              pretrain -> predict-prior -> finetune (prior reg.) -> reinfer
``prior``              the pretrained network's predictions (CLIFF's ablation)
``smplify``            SMPLify fitting started from the prior (SPIN-style, NeuralAnnot's rival)
``lifter``             the 2D-keypoint lifter alone (``method: lifter``; no image network)
``smplify-lifter-init`` SMPLify started from the lifter's pose (SPIN supp.)
``cliff-2nd``          NeuralAnnot's second round: a fresh network trained on cliff's pseudo-GT
``spin``               SPIN: the network trained with SMPLify in the loop (``method: spin``);
                       its final fits dictionary is the row ``spin-fits``
``spin-lifter-init``   the same, the dictionary started from SMPLify of the lifter's pose
``cliff-no-prior-reg`` finetune without regularisation towards the prior
``cliff-no-bbox``      HMR-style crop-only input (own pretrain)
``cliff-crop-loss``    crop-frame reprojection loss in pretrain and finetune (own pretrain)
======================  ==================================================================

The variants that share a pretrained network run one after the other in one run
directory, so the run's state records let them reuse it (and a second bench run with the
same ``--work-dir`` reuses every finished step). ``cliff``, ``prior`` and ``smplify`` also
get the indirect error: an estimator trained from scratch on ``lab`` + their pseudo-GT,
tested on ``wild3d``.

``seconds`` of a method is the wall time of its annotation steps (pretrain included, see
:func:`annotator.methods.annotation_steps`), read from the state records, so a
reused step counts with the time it took when it ran.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field

import pandas as pd

from annotator.config import STEPS
from annotator.evaluation.reports import BASELINE, ORIENT_FLIP_DEG, skill

log = logging.getLogger("annotator")

TARGET = "wild"
EVAL3D = "wild3d"
#: One row of the bench table: the final output's means over the common instances.
ERROR_COLUMNS = ("err2d_px", "mpjpe", "pa_mpjpe", "pve", "err_x", "err_y", "err_z", "orient_err_deg")
#: Training steps whose learning curves the bench keeps.
CURVE_STEPS = ("pretrain", "finetune", "train-spin", "train-second-round", "train-estimator")
INDIRECT_COLUMNS = ("mpjpe", "pa_mpjpe", "pve")


@dataclass(frozen=True)
class Variant:
    label: str
    group: str
    """Run directory: variants of one group share their pretrained network."""
    overrides: tuple[tuple[str, object], ...] = ()
    """``key.path -> value`` changes of the bench job (as ``--set``)."""
    indirect: bool = False
    """Also train and test the indirect-error estimator on this variant's pseudo-GT."""
    ablation: bool = False
    """Run only with ``--ablations`` (the default bench is cliff, prior and smplify)."""
    extra_rows: tuple[tuple[str, str], ...] = ()
    """Further table rows of this variant's run: ``(label, report output)``, e.g. SPIN's final
    fits dictionary (``("spin-fits", "fits")``)."""
    companions: tuple[str, ...] = ()
    """Variants that run whenever this one does (``lifter`` brings ``smplify-lifter-init``: the
    lifter's own pose and SMPLify started from it are read together)."""


VARIANTS = (  # run order matters inside a group: the last one may replace shared steps
    Variant("cliff", "base", indirect=True),
    Variant("prior", "base", (("method", "prior"),), indirect=True),
    Variant("smplify", "base", (("method", "smplify"),), indirect=True),
    Variant("lifter", "base", (("method", "lifter"),), indirect=True, ablation=True,
            companions=("smplify-lifter-init",)),
    Variant("smplify-lifter-init", "base", (("method", "smplify"), ("smplify.init", "lifter")), indirect=True,
            ablation=True),
    Variant("cliff-2nd", "base", (("second_round.enabled", True),), indirect=True, ablation=True),
    Variant("spin", "base", (("method", "spin"),), ablation=True, extra_rows=(("spin-fits", "fits"),)),
    Variant("spin-lifter-init", "base", (("method", "spin"), ("smplify.init", "lifter")), ablation=True,
            extra_rows=(("spin-lifter-init-fits", "fits"),)),
    Variant("cliff-no-prior-reg", "base", (("finetune.use_prior_reg", False),), ablation=True),
    Variant("cliff-no-bbox", "no-bbox", (("network.use_bbox_info", False),), ablation=True),
    Variant("cliff-crop-loss", "crop-loss", (("pretrain.reprojection", "crop"), ("finetune.reprojection", "crop")),
            ablation=True),
)
DEFAULT_METHODS = tuple(v.label for v in VARIANTS if not v.ablation)
VARIANT_BY_LABEL = {v.label: v for v in VARIANTS}
#: Table rows that are not variants of their own: row label -> (variant whose run has it, report output).
EXTRA_ROWS = {row: (v.label, output) for v in VARIANTS for row, output in v.extra_rows}

ORDERINGS = (
    # (claim, paper, better label, worse label, metric)
    ("the finetuned annotator beats its own prior on 3D", "CLIFF Tab. 2 / supp. Tab. 2", "cliff", "prior", "mpjpe"),
    ("the finetuned annotator beats its own prior on 2D", "CLIFF supp. Tab. 2", "cliff", "prior", "err2d_px"),
    ("the annotator beats SMPLify on 3D", "NeuralAnnot Tab. 3-4", "cliff", "smplify", "mpjpe"),
    ("SMPLify has the lower 2D error", "NeuralAnnot Tab. 3-4", "smplify", "cliff", "err2d_px"),
    ("bbox input lowers MPJPE", "CLIFF Tab. 2", "cliff", "cliff-no-bbox", "mpjpe"),
    ("full-frame reprojection lowers MPJPE", "CLIFF Tab. 2", "cliff", "cliff-crop-loss", "mpjpe"),
    ("regularising towards the prior lowers MPJPE", "NeuralAnnot Alg. 1 / three recipes", "cliff",
     "cliff-no-prior-reg", "mpjpe"),
    ("the annotator beats SMPLify on PA-MPJPE", "NeuralAnnot Tab. 3-4", "cliff", "smplify", "pa_mpjpe"),
    ("the finetuned annotator beats its own prior on PA-MPJPE", "CLIFF Tab. 2", "cliff", "prior", "pa_mpjpe"),
    ("training with fits in the loop beats static fits (PA-MPJPE)", "SPIN supp. Tab. 1", "spin", "smplify",
     "pa_mpjpe"),
    ("the fits dictionary improves during training (PA-MPJPE)", "SPIN supp. Tab. 3", "spin-fits", "smplify",
     "pa_mpjpe"),
    ("SMPLify from the lifter beats SMPLify from the network prior (PA-MPJPE)", "SPIN supp. Tab. 1",
     "smplify-lifter-init", "smplify", "pa_mpjpe"),
    ("training in the loop from the lifter's fits beats it from the prior's (PA-MPJPE)", "SPIN supp. Tab. 1",
     "spin-lifter-init", "spin", "pa_mpjpe"),
    ("the second round lowers MPJPE", "NeuralAnnot supp. Sec. 8", "cliff-2nd", "cliff", "mpjpe"),
    ("the second round lowers PA-MPJPE", "NeuralAnnot supp. Sec. 8", "cliff-2nd", "cliff", "pa_mpjpe"),
    ("the second round lowers the indirect error (PA-MPJPE)", "NeuralAnnot supp. Tab. 5", "cliff-2nd", "cliff",
     "indirect_pa_mpjpe"),
    ("an estimator trained on the annotator's pseudo-GT beats one trained on SMPLify's (indirect PA-MPJPE)",
     "NeuralAnnot Tab. 3", "cliff", "smplify", "indirect_pa_mpjpe"),
    ("an estimator trained on the annotator's pseudo-GT beats one trained on the prior's (indirect PA-MPJPE)",
     "NeuralAnnot Tab. 3", "cliff", "prior", "indirect_pa_mpjpe"),
)
#: The lines the annotator is held to (issue "3D skill"): (what, label, metric, bound, "max"/"min").
TARGETS = (
    ("cliff knows more than a constant pose (skill >= 0.3)", "cliff", "skill", 0.3, "min"),
    ("cliff's global orientation median error <= 30 deg", "cliff", "orient_median_deg", 30.0, "max"),
)


@dataclass
class QualitySettings:
    seed: int = 0
    lab_images: int = 2000
    """Pretraining set (one person per image)."""
    wild3d_train_images: int = 1000
    """A second pretraining set in the 3DPW-like domain (its own seed, never the indirect test set's
    images): in-the-wild backgrounds and hand-held cameras, as CLIFF pretrains on 3DPW / MPI-INF-3DHP
    beside Human3.6M."""
    mocap_poses: int = 5000
    """Poses-only synthetic mocap set (the world's AMASS) the VPoser prior is trained on, with the
    aux3d poses."""
    wild_images: int = 150
    """Annotated set (1-4 people per image)."""
    wild3d_images: int = 80
    """Indirect test set (1-2 people per image)."""
    lifter: bool = True
    """Start the annotator network from the 2D-keypoint lifter (``lifter.enabled``)."""
    lifter_poses: int = 20000
    """Synthetic mocap poses the lifter is trained on (with the aux3d poses)."""
    lifter_steps: int = 3000
    crop_size: int = 64
    backbone: str = "resnet18"
    pretrain_epochs: int = 8
    finetune_epochs: int = 10
    estimator_epochs: int = 10
    methods: tuple[str, ...] = DEFAULT_METHODS
    ablations: bool = False
    """Also run the ablations (``cliff-no-prior-reg``, ``cliff-no-bbox``, ``cliff-crop-loss``)."""
    indirect: bool = True
    work_dir: str | None = None
    """Keep the runs here (reused by a later bench run); default: a temporary directory."""
    rescore: bool = False
    """Run nothing: tabulate the variants' results kept under ``work_dir/seed-S/results/`` by earlier
    bench runs (e.g. one run per variant)."""
    ray_cpus: int | None = None
    extra: dict = field(default_factory=dict)
    """Further ``key.path -> value`` overrides applied to every variant."""


def bench_job(s: QualitySettings, root: str, group: str) -> dict:
    """The bench's job (as a job file would hold it) for one run group."""
    seeds = {name: s.seed * 100 + i for i, name in enumerate(("lab", TARGET, EVAL3D, "wild3d_train"))}
    datasets = [
        {"name": "lab", "format": "synth", "role": "aux3d",
         "synth": {"domain": "lab", "num_images": s.lab_images, "seed": seeds["lab"]}},
        {"name": TARGET, "format": "synth", "role": "target",
         "synth": {"domain": "wild", "num_images": s.wild_images, "seed": seeds[TARGET]}},
    ]
    if s.wild3d_train_images:
        datasets.append({"name": "wild3d_train", "format": "synth", "role": "aux3d",
                         "synth": {"domain": "wild3d", "num_images": s.wild3d_train_images,
                                   "seed": seeds["wild3d_train"]}})
    if s.indirect:
        datasets.append({"name": EVAL3D, "format": "synth", "role": "eval3d",
                         "synth": {"domain": "wild3d", "num_images": s.wild3d_images, "seed": seeds[EVAL3D]}})
    return {
        "name": group,
        "storage": {"root": root},
        "datasets": datasets,
        "manifest": {"shard_size": 500},
        "crop": {"size": s.crop_size},
        "network": {"backbone": s.backbone},
        "pose_prior": {"epochs": 30, "mocap_poses": s.mocap_poses, "mocap_seed": s.seed},
        "lifter": {"enabled": s.lifter, "mocap_poses": s.lifter_poses, "steps": s.lifter_steps, "seed": s.seed},
        "pretrain": {"epochs": s.pretrain_epochs, "batch_size": 32, "lr": 1e-3, "seed": s.seed,
                     "heldout_fraction": 0.05},
        "finetune": {"epochs": s.finetune_epochs, "batch_size": 32, "lr": 3e-4, "seed": s.seed,
                     "heldout_fraction": 0.05},
        # SPIN's training in the loop (variant spin) gets the finetune's budget
        "spin": {"epochs": s.finetune_epochs, "batch_size": 32, "lr": 3e-4, "seed": s.seed, "heldout_fraction": 0.05},
        "estimator": {"epochs": s.estimator_epochs, "batch_size": 32, "lr": 1e-3, "seed": s.seed,
                      "heldout_fraction": 0.05},
        # the second round (variant cliff-2nd) is the estimator's recipe on the same budget
        "second_round": {"epochs": s.estimator_epochs, "batch_size": 32, "lr": 1e-3, "seed": s.seed,
                         "heldout_fraction": 0.05},
        "ray": {"inference_batch_size": 64},
    }


def variant_config(s: QualitySettings, root: str, variant: Variant):
    from annotator.config import apply_override, parse_job

    job = bench_job(s, root, variant.group)
    for key, value in (*variant.overrides, *s.extra.items()):
        apply_override(job, f"{key}={json.dumps(value)}")
    if not (variant.indirect and s.indirect):
        job["steps"] = [st for st in STEPS if st not in ("train-estimator", "evaluate")]
    cfg = parse_job(job, source=f"bench quality: {variant.label}").with_absolute_paths()
    if cfg.method_label != variant.label:  # the reports must name the variant as the bench does
        raise AssertionError(f"variant {variant.label}: job's method label is {cfg.method_label}")
    return cfg


def run_variant(s: QualitySettings, root: str, variant: Variant, results: str) -> dict:
    """Run one variant's job; keep a copy of its reports under ``results/<label>/``."""
    from annotator.run import plan_steps, run_job

    cfg = variant_config(s, root, variant)
    t0 = time.monotonic()
    summary = run_job(cfg)
    wall = time.monotonic() - t0
    out = os.path.join(results, variant.label)
    if os.path.exists(out):
        shutil.rmtree(out)
    shutil.copytree(os.path.join(cfg.run_root, "reports"), out, ignore=shutil.ignore_patterns("*.html"))
    # the pseudo-GT itself (pseudo-GT schema), so anyone can re-score it with their own code
    shutil.copytree(os.path.join(cfg.run_root, "pseudo_gt", TARGET), os.path.join(out, "pseudo_gt", TARGET),
                    ignore=shutil.ignore_patterns("_*"))
    curves = {}
    planned = plan_steps(cfg)
    for step in CURVE_STEPS:
        record = os.path.join(cfg.run_root, "state", f"{step}.json")
        if step in planned and os.path.exists(record):
            with open(record, encoding="utf-8") as fh:
                curves[step] = json.load(fh).get("outputs", {}).get("curve", [])
    with open(os.path.join(out, "curves.json"), "w", encoding="utf-8") as fh:
        json.dump(curves, fh, indent=1)
    ran = [k for k, v in summary.items() if v["status"] == "ran"]
    log.info("[bench quality] %s: %.0fs wall (ran %s)", variant.label, wall, ", ".join(ran) or "nothing")
    return {"wall_seconds": round(wall, 1), "ran": ran}


def final_rows(results: str, label: str, output: str = "final") -> pd.DataFrame:
    """The variant's per-sample errors of its final output (or another report ``output``) on the
    target set (by sample_id)."""
    df = pd.read_parquet(os.path.join(results, label, "per_sample", f"{TARGET}.parquet"))
    return df[df["output"] == output].set_index("sample_id")


def table_rows(labels: list[str]) -> list[str]:
    """The table's rows of the variants ``labels``: each variant, then its extra rows."""
    return [row for label in labels for row in (label, *(r for r, _ in VARIANT_BY_LABEL[label].extra_rows))]


def summarise(results: str, labels: list[str]) -> dict:
    """Per table row (:func:`table_rows`): means over the instances every row annotated, seconds, indirect."""
    source = {row: EXTRA_ROWS.get(row, (row, "final")) for row in table_rows(labels)}
    rows = {row: final_rows(results, *source[row]) for row in source}
    common = None
    for df in rows.values():
        common = df.index if common is None else common.intersection(df.index)
    common = common.sort_values() if common is not None else pd.Index([])
    methods, baseline, indirect_baseline = {}, None, None
    for label, df in rows.items():
        sel = df.loc[common]
        entry = {c: round(float(sel[c].mean()), 2) for c in ERROR_COLUMNS if c in sel}
        if "orient_err_deg" in sel:
            entry["orient_median_deg"] = round(float(sel["orient_err_deg"].median()), 2)
            entry["orient_over_90"] = round(float((sel["orient_err_deg"] > ORIENT_FLIP_DEG).mean()), 4)
        with open(os.path.join(results, source[label][0], "summary.json"), encoding="utf-8") as fh:
            summary = json.load(fh)
        baseline = baseline or summary.get("datasets", {}).get(TARGET, {}).get("baseline")
        entry["seconds"] = summary.get("annotation_time", {}).get("seconds")
        indirect = summary.get("indirect", {}).get(EVAL3D, {})
        if indirect.get("estimator"):
            est = indirect["estimator"]
            entry.update({f"indirect_{c}": round(float(est[c]), 2) for c in INDIRECT_COLUMNS if c in est})
            entry["indirect_skill"] = est.get("skill")
            indirect_baseline = indirect_baseline or indirect.get("baseline")
        methods[label] = entry
    for entry in methods.values():
        entry["skill"] = skill(entry, baseline)
    out = {"instances": int(len(common)), "methods": methods, "orderings": check_orderings(methods),
           "targets": check_targets(methods)}
    if baseline:
        out["baseline"] = {"method": BASELINE, **{k: baseline.get(k) for k in ("mpjpe", "pa_mpjpe", "pve")}}
    if indirect_baseline:
        out["indirect_baseline"] = {"method": BASELINE,
                                    **{k: indirect_baseline.get(k) for k in ("mpjpe", "pa_mpjpe", "pve")}}
    return out


def check_targets(methods: dict[str, dict]) -> list[dict]:
    """The :data:`TARGETS` lines, each with the measured value and whether it is met."""
    out = []
    for what, label, metric, bound, kind in TARGETS:
        value = methods.get(label, {}).get(metric)
        met = None if value is None else bool(value >= bound if kind == "min" else value <= bound)
        out.append({"target": what, "method": label, "metric": metric, "bound": bound, "value": value, "met": met})
    return out


def write_learning_curves(results: str, labels: list[str], baseline: dict | None, seed: int) -> dict:
    """``results/learning_curve.png`` (PA-MPJPE after every epoch of pretrain and of cliff's
    finetune) and the points, per step label (also each second round and estimator)."""
    from annotator.evaluation.plots import learning_curve

    curves: dict[str, list] = {}
    for label in labels:
        path = os.path.join(results, label, "curves.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            steps = json.load(fh)
        if "pretrain" in steps and "pretrain" not in curves:
            curves["pretrain"] = steps["pretrain"]
        if label.startswith("cliff") and steps.get("finetune") and not steps.get("train-second-round"):
            curves[f"{label}: finetune"] = steps["finetune"]  # a second round's first round is cliff's own
        if steps.get("train-spin"):  # the network and its fits dictionary after every epoch: kept, not drawn
            curves[f"{label}: train-spin"] = steps["train-spin"]
        if steps.get("train-second-round"):  # from scratch, like the estimator: kept, not drawn
            curves[f"{label}: second round"] = steps["train-second-round"]
        if "train-estimator" in steps:
            curves[f"{label}: estimator"] = steps["train-estimator"]
    draw = {k: v for k, v in curves.items() if k == "pretrain" or k.endswith("finetune")}
    png = learning_curve(draw, {"target": (baseline or {}).get("pa_mpjpe")},
                         title=f"bench quality seed {seed}: 3D error after every epoch")
    with open(os.path.join(results, "learning_curve.png"), "wb") as fh:
        fh.write(png)
    return curves


def check_orderings(methods: dict[str, dict]) -> list[dict]:
    """The papers' claims, each with whether this benchmark reproduces it (None: a variant
    was not run)."""
    out = []
    for claim, paper, better, worse, metric in ORDERINGS:
        a, b = methods.get(better, {}).get(metric), methods.get(worse, {}).get(metric)
        holds = None if a is None or b is None else bool(a < b)
        out.append({"claim": claim, "paper": paper, "metric": metric, "better": better, "worse": worse,
                    "values": [a, b], "holds": holds})
    return out


def expand_methods(methods, ablations: bool = False) -> tuple[str, ...]:
    """The variants a bench runs, in :data:`VARIANTS` order: those asked for, their companions, and
    with ``ablations`` every other variant (unknown labels are kept, for the error that names them)."""
    asked = set(methods) | {c for m in methods if m in VARIANT_BY_LABEL for c in VARIANT_BY_LABEL[m].companions}
    out = tuple(v.label for v in VARIANTS if v.label in asked) + tuple(m for m in methods if m not in VARIANT_BY_LABEL)
    return out + (tuple(v.label for v in VARIANTS if v.ablation and v.label not in out) if ablations else ())


def run_bench(s: QualitySettings) -> dict:
    import ray

    s = QualitySettings(**{**asdict(s), "methods": expand_methods(s.methods, s.ablations)})
    unknown = [m for m in s.methods if m not in VARIANT_BY_LABEL]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(VARIANT_BY_LABEL)}")
    if s.rescore and not s.work_dir:
        raise ValueError("--rescore needs --work-dir (the results of earlier bench runs)")
    tmp = None if s.work_dir else tempfile.mkdtemp(prefix="annotator-bench-quality-")
    work = os.path.abspath(s.work_dir or tmp)
    root, results = os.path.join(work, f"seed-{s.seed}"), os.path.join(work, f"seed-{s.seed}", "results")
    os.makedirs(results, exist_ok=True)
    started_ray = False
    if not ray.is_initialized() and not s.rescore:
        ray.init(address="local", num_cpus=s.ray_cpus or max(2, os.cpu_count() or 2), include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False)
        started_ray = True
    t0 = time.monotonic()
    try:
        runs = {}
        for variant in [v for v in VARIANTS if v.label in s.methods and not s.rescore]:
            runs[variant.label] = run_variant(s, root, variant, results)
        table = summarise(results, [v.label for v in VARIANTS if v.label in s.methods])
        table["curves"] = write_learning_curves(results, [v.label for v in VARIANTS if v.label in s.methods],
                                                table.get("baseline"), s.seed)
    finally:
        if started_ray:
            ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    settings = asdict(s)
    settings["methods"] = list(s.methods)
    return {"seed": s.seed, **table, "wall_seconds": round(time.monotonic() - t0, 1), "runs": runs,
            "settings": settings, "cpu_count": os.cpu_count()}


def format_table(result: dict) -> str:
    cols = ("err2d_px", "mpjpe", "pa_mpjpe", "skill", "orient_median_deg", "orient_over_90", "pve",
            "err_x", "err_y", "err_z", "seconds")
    head = ("method", "2D px", "MPJPE", "PA-MPJPE", "skill", "orient med.", ">90 deg", "PVE", "x", "y", "z", "time s")
    ind = any("indirect_mpjpe" in m for m in result["methods"].values())
    if ind:
        head += ("ind. MPJPE", "ind. PA-MPJPE", "ind. PVE")
    lines = [f"seed {result['seed']}: {result['instances']} instances of the synthetic wild set "
             "(errors in mm except 2D; time = wall s of the method's annotation steps)",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    def fmt(c, v):
        return "-" if v is None else (f"{v:.2f}" if c in ("skill", "orient_over_90") else f"{v:.1f}")

    rows = list(result["methods"].items())
    if result.get("baseline"):
        base = {**result["baseline"], "skill": 0.0}
        ib = result.get("indirect_baseline") or {}
        base.update({f"indirect_{c}": ib.get(c) for c in INDIRECT_COLUMNS})
        rows.append((BASELINE, base))
    for label, m in rows:
        vals = [fmt(c, m.get(c)) for c in cols] + ([fmt(c, m.get(f"indirect_{c}")) for c in INDIRECT_COLUMNS]
                                                   if ind else [])
        lines.append("| " + " | ".join([label] + vals) + " |")
    lines.append("")
    for t in result.get("targets", []):
        mark = {True: "met", False: "NOT MET", None: "not run"}[t["met"]]
        lines.append(f"- target: {t['target']}: {mark} ({t['value']})")
    for o in result["orderings"]:
        mark = {True: "holds", False: "DOES NOT HOLD", None: "not run"}[o["holds"]]
        vals = "" if o["holds"] is None else f" ({o['better']} {o['values'][0]:.1f} vs {o['worse']} {o['values'][1]:.1f})"
        lines.append(f"- {o['claim']} [{o['paper']}, {o['metric']}]: {mark}{vals}")
    return "\n".join(lines)


def settings_from_args(args) -> QualitySettings:
    base = QualitySettings()
    values = {k: getattr(args, k) for k in asdict(base) if getattr(args, k, None) is not None}
    if "methods" in values:
        values["methods"] = tuple(values["methods"])
    return QualitySettings(**{**asdict(base), **copy.deepcopy(values)})


__all__ = ["QualitySettings", "VARIANTS", "ORDERINGS", "bench_job", "variant_config", "run_bench", "summarise",
           "check_orderings", "format_table", "settings_from_args"]

