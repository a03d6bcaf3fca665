"""The output contract of a run: every path under ``<storage root>/<job name>/``.

Steps, reports, the dashboard, overlays, exports and benchmarks all spell run paths
through :class:`RunLayout`; nothing else joins path pieces of a run.
"""
from __future__ import annotations

from dataclasses import dataclass

from annotator import storage

#: The annotation outputs of a target set: the network's prior predictions, the first round's
#: pseudo-GT (only with ``second_round.enabled``: the second round's is then ``pseudo_gt``), and the pseudo-GT.
OUTPUT_KINDS = ("prior", "first_round", "pseudo_gt", "fits")


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run: ``<storage root>/<job name>/...`` (the output contract)."""

    root: str

    @classmethod
    def of_output(cls, path: str) -> "RunLayout":
        """The run an output belongs to: ``<run>/pseudo_gt/<dataset>[/part-N.parquet]`` -> ``<run>``."""
        d = path.rstrip("/")
        if d.endswith(".parquet"):
            d = d.rsplit("/", 1)[0]
        return cls(d.rsplit("/", 2)[0] if d.count("/") >= 2 else ".")

    def manifest_dir(self) -> str:
        return storage.join(self.root, "manifest")

    def manifest(self, dataset: str) -> str:
        return storage.join(self.manifest_dir(), dataset)

    def rejects(self, dataset: str) -> str:
        return storage.join(self.root, "rejects", dataset)

    def synth(self, dataset: str) -> str:
        return storage.join(self.root, "synth", dataset)

    def checkpoints(self, step: str = "") -> str:
        return storage.join(self.root, "checkpoints", step) if step else storage.join(self.root, "checkpoints")

    def pose_prior(self) -> str:
        """The VPoser pose prior of step ``train-pose-prior`` (``vposer.pt``)."""
        return storage.join(self.root, "pose_prior")

    def crops(self, dataset: str) -> str:
        """The crop cache of a dataset (:mod:`annotator.data.crop_cache`)."""
        return storage.join(self.root, "crops", dataset)

    def prior(self, dataset: str) -> str:
        """The pretrained network's predictions on a target set (step ``predict-prior``)."""
        return self.output("prior", dataset)

    def pseudo_gt(self, dataset: str) -> str:
        return self.output("pseudo_gt", dataset)

    def fits(self, dataset: str) -> str:
        """With ``method: spin``: the final fits dictionary of step ``train-spin`` (pseudo-GT schema)."""
        return self.output("fits", dataset)

    def first_round(self, dataset: str) -> str:
        """With ``second_round.enabled``: step ``reinfer``'s pseudo-GT, which the second round trains on."""
        return self.output("first_round", dataset)

    def aux_pseudo_gt(self, dataset: str) -> str:
        """SMPL pseudo-GT of an ``aux3d`` set's rows without SMPL (step ``annotate-aux``)."""
        return storage.join(self.root, "aux_pseudo_gt", dataset)

    def evaluation(self, dataset: str) -> str:
        """Predictions of the indirect-error estimator on an ``eval3d`` set."""
        return storage.join(self.root, "evaluation", dataset)

    def output_dir(self, kind: str) -> str:
        """The folder of every dataset's output of ``kind`` (one of :data:`OUTPUT_KINDS`)."""
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output {kind!r}; one of {', '.join(OUTPUT_KINDS)}")
        return storage.join(self.root, kind)

    def output(self, kind: str, dataset: str) -> str:
        """An annotation output of a dataset: ``kind`` is one of :data:`OUTPUT_KINDS`."""
        return storage.join(self.output_dir(kind), dataset)

    def reports(self) -> str:
        return storage.join(self.root, "reports")

    def per_sample_dir(self) -> str:
        return storage.join(self.root, "reports", "per_sample")

    def per_sample(self, dataset: str) -> str:
        """Per-sample direct errors of a dataset's outputs (step ``report``)."""
        return storage.join(self.per_sample_dir(), f"{dataset}.parquet")

    def indirect(self, dataset: str) -> str:
        """Indirect errors of the estimator on an ``eval3d`` set (step ``report``)."""
        return storage.join(self.root, "reports", "indirect", f"{dataset}.parquet")

    def summary(self) -> str:
        return storage.join(self.root, "reports", "summary.json")

    def dashboard(self) -> str:
        return storage.join(self.root, "reports", "dashboard.html")

    def state_dir(self) -> str:
        return storage.join(self.root, "state")

    def state(self, step: str) -> str:
        return storage.join(self.state_dir(), f"{step}.json")

    def body_model(self) -> str:
        """The run's own copy of its body model file (what every worker and report loads)."""
        return storage.join(self.root, "body_model", "smpl", "SMPL_NEUTRAL.pkl")

    def body_model_record(self) -> str:
        """How to load :meth:`body_model`: its kind, ``num_betas``, model id and checksum."""
        return storage.join(self.root, "body_model", "body_model.json")
