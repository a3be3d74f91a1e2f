"""How faithfully a candidate (int8, compressed, exported) reproduces its reference's outputs on the same images,
and the gate every such file must pass.

Top-1 agreement is what users feel, but alone it is blind when the reference answers one class for (nearly) every
input -- a randomly initialised network does, so does a badly trained one: agreement is then 1.000 whatever the
candidate computes (a garbage int8 file measured agreement 1.000 with KL 5.4). So every gate reads:

- ``agreement``: the share of images with the reference's top-1 class;
- ``snr_db``: for each image, the energy of the reference's *input-dependent* logits over the energy of the
  candidate's error; the median over images, in decibels. Signal: the reference's logits centred per image
  (softmax ignores a shift) and per class by its median over the images (a bias common to every image says
  nothing about the image; the median, because one extreme image would move a mean). Error: candidate minus
  reference, centred per image only (a wrong bias for a class changes answers, so it counts). It does not depend
  on the logits' scale or on how many classes the reference answers; it is about 0 dB for a candidate that
  answers every image with the reference's typical output and below 0 for random outputs. Per image and by the
  median, so that no image outweighs the others: an energy ratio over all images was dominated by one
  calibration image 1000x brighter than the rest (49 dB for a file that changed 89% of the answers). KL cannot
  see a broken file when the reference's softmax is nearly uniform (logits near 0, as at initialisation); this
  does;
- ``kl``: mean KL(reference || candidate) of the softmax outputs, nats (reported; its scale follows the model's
  confidence, so it is not a gate).

The default gate (:data:`DEFAULT_GATE`) was derived from faithful and broken int8 files of four models
(``benchmarks/int8_gate.py``; figures in ``docs/deployment.md``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Protocol

import torch

from ..errors import SqueezeNetError

#: |SNR| is reported up to this: beyond float64's resolution of the energies (and JSON has no infinity)
SNR_LIMIT_DB = 300.0
#: a segmenter's answers judged per image: pixels on a regular grid, about this many
PIXELS_PER_IMAGE = 1024


@dataclass(frozen=True)
class Fidelity:
    """A candidate's outputs against its reference's on the same images."""

    images: int
    agreement: float  # same top-1 class
    kl: float  # mean KL(reference || candidate), nats
    snr_db: float  # input-dependent logit signal over the candidate's error on it (SNR_LIMIT_DB: identical)
    reference_classes: int  # distinct top-1 answers of the reference on these images
    reference_top_share: float  # share of images on which the reference gives its most frequent answer

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return f"agreement {self.agreement:.3f}, logit SNR {self.snr_db:.1f} dB, KL {self.kl:.4f}"


class FidelityAccumulator:
    """:class:`Fidelity` over batches. The per-class centring needs every image, so the reference's logits are kept
    (float32, centred per image: 200 MB for 50,000 images of 1000 classes) with each image's error energy."""

    def __init__(self) -> None:
        self.n, self.agree, self.kl = 0, 0, 0.0
        self.signals: list[torch.Tensor] = []
        self.errors: list[torch.Tensor] = []
        self.answers: torch.Tensor | None = None

    def update(self, reference: torch.Tensor, candidate: torch.Tensor) -> None:
        """Add a batch: both models' logits (images x classes) for the same images. A detector's outputs (images x
        anchors x (4 box deltas + background + classes)) are judged by their class logits, each anchor an answer
        (its box deltas are not: an export's max |difference| covers them). A segmenter's (images x classes x H x
        W) by the class logits of pixels on a grid, each pixel an answer: at most ~1,024 pixels an image (every
        pixel of 32 images of 320x320 would keep 1 GB of logits for the per-class centring)."""
        if reference.dim() == 3 and candidate.dim() == 3 and reference.shape[-1] > 5:
            reference, candidate = (t[..., 4:].reshape(-1, t.shape[-1] - 4) for t in (reference, candidate))
        elif reference.dim() == 4 and candidate.dim() == 4 and reference.shape == candidate.shape:
            step = max(1, math.ceil(math.sqrt(reference.shape[-2] * reference.shape[-1] / PIXELS_PER_IMAGE)))
            reference, candidate = (t[:, :, ::step, ::step].permute(0, 2, 3, 1).reshape(-1, t.shape[1])
                                    for t in (reference, candidate))
        if reference.shape != candidate.shape or reference.dim() != 2 or (self.answers is not None
                                                                          and reference.shape[1] != len(self.answers)):
            raise SqueezeNetError(f"logits of shape {list(candidate.shape)} cannot be paired with {list(reference.shape)}")
        lr, lc = reference.double().log_softmax(1), candidate.double().log_softmax(1)
        top = lr.argmax(1)
        self.agree += int((top == lc.argmax(1)).sum())
        self.kl += float((lr.exp() * (lr - lc)).sum())
        signal = reference.double() - reference.double().mean(1, keepdim=True)  # softmax ignores a shift per image
        error = candidate.double() - candidate.double().mean(1, keepdim=True) - signal
        if self.answers is None:
            self.answers = torch.zeros(reference.shape[1], dtype=torch.int64)
        self.signals.append(signal.float())
        self.errors.append(error.pow(2).sum(1))
        self.answers += torch.bincount(top, minlength=len(self.answers))
        self.n += len(reference)

    def result(self) -> Fidelity:
        if not self.n or self.answers is None:
            raise SqueezeNetError("no images to compare")
        signals = torch.cat(self.signals).double()
        energy = (signals - signals.median(0, keepdim=True).values).pow(2).sum(1)  # what each image's logits say about it
        error = torch.cat(self.errors)
        limit = 10 ** (SNR_LIMIT_DB / 10)
        # error/energy per image, with 0/0 (identical outputs, an image at the average answer) as identical
        ratio = torch.where(error == 0, 0.0, error / energy.clamp_min(1e-300))
        ratio = torch.nan_to_num(ratio, nan=math.inf)  # non-finite outputs are as wrong as outputs get
        median = float(ratio.median())
        snr = float(10 * math.log10(min(max(1 / median, 1 / limit), limit))) if median > 0 else SNR_LIMIT_DB
        return Fidelity(self.n, self.agree / self.n, self.kl / self.n, snr, int((self.answers > 0).sum()),
                        float(self.answers.max()) / self.n)


def fidelity(reference: torch.Tensor, candidate: torch.Tensor) -> Fidelity:
    """:class:`Fidelity` of ``candidate``'s logits against ``reference``'s (images x classes, same images)."""
    acc = FidelityAccumulator()
    acc.update(reference, candidate)
    return acc.result()


class Measured(Protocol):
    """What a gate reads: a :class:`Fidelity`, or a record of one (``Int8Check``)."""

    @property
    def agreement(self) -> float: ...

    @property
    def snr_db(self) -> float: ...


@dataclass(frozen=True)
class FidelityGate:
    """What a candidate must keep of its reference's outputs to be written: top-1 agreement (what users feel) *and*
    logit SNR (what sees a broken file when the reference answers one class, where agreement reads 1.000)."""

    min_agreement: float
    min_snr_db: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_agreement <= 1.0:
            raise SqueezeNetError(f"min_agreement={self.min_agreement} must lie in [0, 1]")
        if math.isnan(self.min_snr_db):
            raise SqueezeNetError("min_snr_db=nan is not a number")

    def shortfalls(self, f: Measured) -> list[str]:
        """What ``f`` lacks, in words; empty when it passes."""
        out = []
        if f.agreement < self.min_agreement:
            out.append(f"agreement {f.agreement:.3f} < {self.min_agreement:g}")
        if not f.snr_db >= self.min_snr_db:
            out.append(f"logit SNR {f.snr_db:.1f} dB < {self.min_snr_db:g} dB")
        return out

    def passes(self, f: Measured) -> bool:
        return not self.shortfalls(f)

    def describe(self) -> str:
        return f"top-1 agreement >= {self.min_agreement:g} and logit SNR >= {self.min_snr_db:g} dB"


#: derived from benchmarks/int8_gate.py (docs/deployment.md, "The int8 gate"): every faithful int8 file measured
#: kept >= 19.0 dB and >= 0.904 agreement, every broken one <= 10.4 dB; 15 dB is the middle of that gap. Agreement
#: 0.95: the published model's default int8 file agrees on 0.968 of its calibration images (0.952 held out).
DEFAULT_MIN_AGREEMENT = 0.95
DEFAULT_MIN_SNR_DB = 15.0
DEFAULT_GATE = FidelityGate(DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_SNR_DB)
