"""Rerun a bench quality run's finetune with other settings, from its pretrained network.

    python benchmarks/finetune_variant.py SEED SRC_WORK_DIR DST_WORK_DIR '{"finetune.lr": 1e-5}' ['{"wild_images": 600}']

copies ``SRC/seed-SEED/base`` (an ``annotator bench quality --work-dir SRC`` run, or one made by
the same job up to predict-prior) to ``DST``, applies the ``key.path -> value`` overrides to the
bench's ``cliff`` job and runs finetune -> reinfer -> report (steps before are reused from their
state records; no indirect estimator). Prints the `wild` rows (final = cliff, prior) against
``baseline-mean-pose`` and the finetune's learning curve. The README's finetune table comes from it
(rows and overrides there). The optional last argument gives the bench settings SRC was run
with where they are not the defaults (``QualitySettings`` fields: ``annotator bench quality
--wild-images 600 --no-indirect`` is ``'{"wild_images": 600, "indirect": false}'``).
"""
import logging, sys, time, os, json, shutil
import ray
from annotator.bench.quality import QualitySettings, variant_config, VARIANT_BY_LABEL
from annotator.run import run_job
seed, src, dst = int(sys.argv[1]), sys.argv[2], sys.argv[3]
extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
settings = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
logging.basicConfig(level=logging.INFO)
if not os.path.exists(os.path.join(dst, f"seed-{seed}", "base")):
    shutil.copytree(os.path.join(src, f"seed-{seed}", "base"), os.path.join(dst, f"seed-{seed}", "base"), symlinks=True)
s = QualitySettings(seed=seed, extra=extra, **settings)
cfg = variant_config(s, os.path.join(dst, f"seed-{seed}"), VARIANT_BY_LABEL["cliff"])
cfg = cfg.model_copy(update={"steps": [st for st in cfg.steps if st not in ("train-estimator", "evaluate")]})
ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
t0 = time.time()
summary = run_job(cfg)
print("WALL", time.time() - t0, {k: v.get("status") for k, v in summary.items()})
rep = json.load(open(os.path.join(cfg.run_root, "reports", "summary.json")))
w = rep["datasets"]["wild"]
print("BASELINE", {k: w["baseline"].get(k) for k in ("mpjpe", "pa_mpjpe")})
for o, v in w["outputs"].items():
    print("OUT", o, {k: v.get(k) for k in ("err2d_px", "mpjpe", "pa_mpjpe", "orient_median_deg", "skill")})
rec = json.load(open(os.path.join(cfg.run_root, "state", "finetune.json")))
for p in rec.get("outputs", {}).get("curve", []):
    print("CURVE", json.dumps(p)[:400])
