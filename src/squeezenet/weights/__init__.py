"""Published weights and weight files. Builds on ``squeezenet.models``."""

from ..common.imagenet import imagenet_names, imagenet_wnids
from ..models import CAFFE, CIFAR, TORCHVISION, ModelMeta, Preprocessing, preset
from .api import build_model, convert_weights, create_model, load_backbone, load_weights, save_weights, sqz_size, sqz_tensor_bytes
from .files import READ_FORMATS, WRITE_FORMATS, WeightsFile, infer_config, parse_meta, read_weights_file, write_weights_file
from .pretrained import PRETRAINED, default_pretrained, fetch_pretrained, list_pretrained

__all__ = [
    "CAFFE", "CIFAR", "PRETRAINED", "READ_FORMATS", "TORCHVISION", "WRITE_FORMATS", "ModelMeta", "Preprocessing",
    "WeightsFile", "build_model", "convert_weights", "create_model", "default_pretrained", "fetch_pretrained",
    "imagenet_names", "imagenet_wnids", "infer_config", "list_pretrained", "load_backbone",
    "load_weights", "parse_meta", "preset",
    "read_weights_file", "save_weights", "sqz_size", "sqz_tensor_bytes", "write_weights_file",
]
