"""Deep Compression: pruning, trained quantization and the pipeline. Builds on models, weights and train.

The entropy-coded ``.sqz`` format itself lives in :mod:`squeezenet.weights.sqz`, so every command
that reads weights reads it.
"""

from .fold import fold_batch_norm
from .kmeans import kmeans_1d
from .methods import METHODS, FineTune, Method, PostTraining, Reconstruct, SideDataOnly
from .pipeline import CompressionLog, compress_model
from .prune import PruningMask, Target, parse_targets, prune, remove_masks
from .quantize import SharedWeights, parse_bits, quantize, remove_sharing
from .sensitivity import Sensitivity, plot_sensitivity, sensitivity

__all__ = [
    "METHODS", "CompressionLog", "FineTune", "Method", "PostTraining", "PruningMask", "Reconstruct", "Sensitivity",
    "SharedWeights", "SideDataOnly", "Target", "compress_model", "fold_batch_norm", "kmeans_1d", "parse_bits",
    "parse_targets", "plot_sensitivity", "prune", "quantize", "remove_masks", "remove_sharing", "sensitivity",
]
