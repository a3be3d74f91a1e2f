"""Named published weights (``squeezenet1_1.tv_in1k``): where they live and how they are fetched.

Files download once into the torch hub cache (``$TORCH_HOME/hub/checkpoints``) and are checked
against their published hash. Offline, the error names the URL and the path to put the file at.
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import SqueezeNet1_0_Weights, SqueezeNet1_1_Weights

from ..errors import SqueezeNetError
from ..models import CAFFE, TORCHVISION, Preprocessing


@dataclass(frozen=True)
class PretrainedWeights:
    name: str
    url: str
    hash_prefix: str  # leading hex digits of the file's sha256
    preprocessing: Preprocessing
    description: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def cache_path(self) -> Path:
        return Path(torch.hub.get_dir()) / "checkpoints" / self.file_name


def _tv(name: str, weights: SqueezeNet1_0_Weights | SqueezeNet1_1_Weights) -> PretrainedWeights:
    url = weights.url
    metrics = weights.meta["_metrics"]["ImageNet-1K"]
    return PretrainedWeights(
        name, url, url.rsplit("-", 1)[-1].split(".")[0], TORCHVISION,
        f"torchvision ImageNet-1k weights (acc@1 {metrics['acc@1']}, acc@5 {metrics['acc@5']})",
    )


PRETRAINED: dict[str, PretrainedWeights] = {
    w.name: w
    for w in (
        _tv("squeezenet1_0.tv_in1k", SqueezeNet1_0_Weights.IMAGENET1K_V1),
        _tv("squeezenet1_1.tv_in1k", SqueezeNet1_1_Weights.IMAGENET1K_V1),
        PretrainedWeights(
            "squeezenet1_0.dc_in1k",
            "https://github.com/songhan/SqueezeNet-Deep-Compression/raw/master/compressed_SqueezeNet.net",
            "e4ab6960ae8cd81505e1c2136921201507e930966c53deaf15862a395b3a3261",
            CAFFE,
            "Deep Compression SqueezeNet v1.0 (Han et al.; 33% density, 8-bit shared weights, 660 KB, BSD licence)",
        ),
    )
}


def list_pretrained() -> list[str]:
    return sorted(PRETRAINED)


def default_pretrained(model_name: str) -> str:
    """The weights ``create_model(model_name, pretrained=True)`` loads: the first named set for that model."""
    for name in PRETRAINED:
        if name.split(".")[0] == model_name:
            return name
    raise SqueezeNetError(f"no published weights for {model_name}; named weights are: {', '.join(list_pretrained())}")


def fetch_pretrained(name: str, *, progress: bool = True) -> Path:
    """Local path of named weights, downloading them into the torch hub cache the first time."""
    try:
        weights = PRETRAINED[name]
    except KeyError:
        raise SqueezeNetError(f"unknown weights {name!r}; named weights are: {', '.join(list_pretrained())}") from None
    path = weights.cache_path()
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        torch.hub.download_url_to_file(weights.url, str(tmp), hash_prefix=weights.hash_prefix, progress=progress)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(f"could not download {name} ({exc}); fetch {weights.url} by hand and save it as {path}") from None
    except RuntimeError as exc:  # hash mismatch
        tmp.unlink(missing_ok=True)
        raise SqueezeNetError(f"download of {name} from {weights.url} is corrupt: {exc}") from None
    tmp.replace(path)
    return path
