"""``annotator bench ...``: quality and throughput of the product, measured in one run each.

* ``quality``: every annotation method and ablation on one seeded synthetic world - 2D,
  direct and indirect 3D errors, annotation time (:mod:`annotator.bench.quality`);
* ``throughput``: the inference pipeline vs the bare model, actor scaling, memory vs
  manifest size, decode and finetune rates (:mod:`annotator.bench.throughput`);
* ``aux``: SMPL for a 3D-joints-only aux set by the IK network and NeuralAnnot's image + joints
  network vs its hidden truth (:mod:`annotator.bench.aux`);
* ``smplify``: the fitting baseline alone on synthetic people (:mod:`annotator.bench.smplify`);
* ``body``: body-model forward time, median ms per batch size (:mod:`annotator.bench.body`);
* ``synth``: the same measurement as ``annotator synth bench`` (synthetic data generation).
"""
from __future__ import annotations

import argparse
import json

from annotator import storage


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmarks: pipeline throughput, body model, synthetic data",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="bench_command", required=True)

    t = sub.add_parser("throughput", help="inference pipeline vs bare model, scaling, memory, decode, finetune")
    t.add_argument("--instances", type=int, default=2000, help="manifest rows of the main runs")
    t.add_argument("--big-instances", type=int, default=20000, help="manifest rows of the memory-flatness run")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--crop-size", type=int, default=64)
    t.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    t.add_argument("--shard-size", type=int, default=500, help="manifest rows per shard (one Ray block each)")
    t.add_argument("--num-images", type=int, default=50, help="synthetic wild images the manifests reuse")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--ray-cpus", type=int, default=None, help="logical CPUs of the bench's own Ray cluster")
    t.add_argument("--work-dir", default=None, help="keep images/manifests/outputs here (default: temp dir)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="write the result JSON here (local or s3://)")
    t.add_argument("--no-ray-train", dest="ray_train_finetune", action="store_false",
                   help="skip the finetune measured through Ray Train (saves ~2 min)")
    t.set_defaults(func=_throughput)

    b = sub.add_parser("body", help="forward time of the body model (median ms)")
    b.add_argument("--kind", choices=["open", "smpl"], default="open")
    b.add_argument("--path", default=None, help="model pkl (required for --kind smpl)")
    b.add_argument("--cache-dir", default=None, help="project cache (default $ANNOTATOR_CACHE_DIR)")
    b.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    b.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    b.add_argument("--repeats", type=int, default=20)
    b.set_defaults(func=_body)

    a = sub.add_parser("aux", help="SMPL for a set with 3D joints only (IK network, NeuralAnnot's image + joints "
                                   "network) vs its hidden truth")
    # defaults None: the values of annotator.bench.aux.AuxSettings apply
    a.add_argument("--seed", type=int, default=None, help="picks the synthetic world (default 0)")
    a.add_argument("--images", type=int, default=None, help="lab images (one person each) of the test set (300)")
    a.add_argument("--train-poses", type=int, default=None,
                   help="synthetic mocap poses the IK network trains on (20000)")
    a.add_argument("--steps", type=int, default=None, help="IK training steps (1500)")
    a.add_argument("--image-epochs", type=int, default=None, help="epochs of the image + joints network (40)")
    a.add_argument("--image-init", default=None, choices=["ik", "mean"],
                   help="where the image + joints network's regressor starts (aux_image.init, default ik)")
    a.add_argument("--no-image", dest="image", action="store_false", default=None,
                   help="skip the neuralannot-aux job (and its ik-coco17 row)")
    a.add_argument("--work-dir", default=None, help="keep the neuralannot-aux job's run here (default: a temporary dir)")
    a.add_argument("--out", default=None, help="also write the numbers as JSON here (local or s3://)")
    a.set_defaults(func=_aux)

    f = sub.add_parser("smplify", help="SMPLify baseline: time per person and errors on synthetic people")
    f.add_argument("--num-images", type=int, default=64)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--batch-size", type=int, default=64)
    f.set_defaults(func=_smplify)

    q = sub.add_parser("quality", help="cliff / prior / smplify (and the ablations) on one synthetic world: "
                                      "2D, MPJPE, PA-MPJPE, PVE, x/y/z, time, indirect error")
    q.add_argument("--seed", type=int, default=None, help="picks the synthetic world (default 0)")
    q.add_argument("--out", default=None, help="also write the numbers as JSON here (local or s3://)")
    q.add_argument("--work-dir", default=None,
                   help="keep the runs here; a later bench run with the same dir reuses finished steps")
    q.add_argument("--methods", nargs="+", default=None, metavar="LABEL",
                   help="variants (spin adds the row spin-fits, lifter brings smplify-lifter-init); subset of: cliff prior "
                        "smplify lifter smplify-lifter-init cliff-2nd spin spin-lifter-init cliff-no-prior-reg cliff-no-bbox "
                        "cliff-crop-loss")
    q.add_argument("--ablations", action="store_true", default=None,
                   help="also run every variant not in --methods (lifter, smplify-lifter-init, cliff-2nd, spin and the "
                        "cliff ablations)")
    q.add_argument("--rescore", action="store_true", default=None,
                   help="run nothing: tabulate the results earlier bench runs kept in --work-dir")
    q.add_argument("--no-indirect", dest="indirect", action="store_false", default=None,
                   help="skip the indirect error (estimator trained on the pseudo-GT)")
    for name in ("lab_images", "wild3d_train_images", "mocap_poses", "lifter_poses", "lifter_steps", "wild_images", "wild3d_images", "crop_size", "pretrain_epochs", "finetune_epochs",
                 "estimator_epochs", "ray_cpus"):
        q.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=None)
    q.set_defaults(func=_quality)

    s = sub.add_parser("synth", help="synthetic data generation rate (= annotator synth bench)")
    s.add_argument("--domain", default="wild", choices=["lab", "wild", "wild3d"])
    s.add_argument("--num-images", type=int, default=32)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_synth)


def _quality(args: argparse.Namespace) -> int:
    from annotator.bench.quality import format_table, run_bench, settings_from_args
    from annotator.steps.base import setup_logging

    setup_logging()
    result = run_bench(settings_from_args(args))
    print(format_table(result))
    if args.out:
        storage.write_bytes_atomic(args.out, (json.dumps(result, indent=2) + "\n").encode())
        print(f"wrote {storage.redact(args.out)}")
    return 0


def _aux(args: argparse.Namespace) -> int:
    from annotator.bench.aux import AuxSettings, format_table, run

    given = {k: getattr(args, k) for k in ("seed", "images", "train_poses", "steps", "image_epochs", "image_init", "image",
                                            "work_dir")
             if getattr(args, k) is not None}
    result = run(AuxSettings(**given))
    print(format_table(result))
    if args.out:
        storage.write_bytes_atomic(args.out, json.dumps(result, indent=1).encode())
    return 0


def _smplify(args: argparse.Namespace) -> int:
    from annotator.bench.smplify import format_result, run

    print(format_result(run(args.num_images, args.seed, args.batch_size)))
    return 0


def _throughput(args: argparse.Namespace) -> int:
    from annotator.bench.throughput import BenchSettings, format_table, run_bench

    settings = BenchSettings(instances=args.instances, big_instances=args.big_instances, batch_size=args.batch_size,
                             crop_size=args.crop_size, backbone=args.backbone, shard_size=args.shard_size,
                             num_images=args.num_images, device=args.device, ray_cpus=args.ray_cpus,
                             work_dir=args.work_dir, seed=args.seed, ray_train_finetune=args.ray_train_finetune)
    result = run_bench(settings)
    print(format_table(result))
    text = json.dumps(result, indent=2)
    if args.out:
        storage.write_bytes_atomic(args.out, (text + "\n").encode())
        print(f"wrote {storage.redact(args.out)}")
    else:
        print(text)
    return 0


def _body(args: argparse.Namespace) -> int:
    from annotator.bench.body import run
    from annotator.config import BodyModelConfig

    kw = {"kind": args.kind}
    if args.path:
        kw["path"] = args.path
    if args.cache_dir:
        kw["cache_dir"] = args.cache_dir
    print(json.dumps(run(BodyModelConfig(**kw), args.device, tuple(args.batch), args.repeats), indent=2))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from annotator.data.synth.bench import run_bench

    print(json.dumps(run_bench(args.domain, args.num_images, args.seed), indent=2, sort_keys=True))
    return 0
