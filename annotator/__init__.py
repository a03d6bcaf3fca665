"""annotator: 2D human-pose datasets in, 3D SMPL pseudo-ground-truth out (CLIFF / NeuralAnnot)."""
__version__ = "0.1.0"
