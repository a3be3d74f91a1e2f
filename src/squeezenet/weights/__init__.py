"""Published weights, weight files and preprocessing. Builds on ``squeezenet.models``."""

from .api import build_model, convert_weights, infer_config, load_weights, save_weights
from .files import READ_FORMATS, WRITE_FORMATS, WeightsFile, WeightsMeta, atomic_path, read_weights_file, write_weights_file
from .imagenet import imagenet_names, imagenet_wnids
from .preprocessing import CAFFE, CIFAR, TORCHVISION, Preprocessing, preset
from .pretrained import PRETRAINED, fetch_pretrained, list_pretrained

__all__ = [
    "CAFFE", "CIFAR", "PRETRAINED", "READ_FORMATS", "TORCHVISION", "WRITE_FORMATS", "Preprocessing", "WeightsFile", "WeightsMeta",
    "atomic_path", "build_model", "convert_weights", "fetch_pretrained", "imagenet_names", "imagenet_wnids", "infer_config",
    "list_pretrained", "load_weights", "preset", "read_weights_file", "save_weights", "write_weights_file",
]
