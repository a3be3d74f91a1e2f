"""Paired evaluation: a candidate model (compressed, int8, exported) against its reference on the same images.

Accuracy alone cannot tell a compressed model from its reference on a few hundred images (250 images give a
+-3 point band); whether it gives the *same answers* can. Every image is decoded once and fed to both models
through their own preprocessing. Reported: both models' top-1/top-5, the top-1 agreement (same top-1 class),
the mean KL(reference || candidate) of their softmax outputs, the logit SNR (:mod:`.fidelity`: what sees a
broken candidate when the reference answers one class, where agreement reads 1.000), how many distinct answers
the reference gave, and the top-1 difference (candidate - reference) with a paired 95% interval and an exact
McNemar test on the discordant images:

- interval: Agresti & Min's (2005) adjusted Wald interval for a difference of paired proportions (0.5 added to each
  cell of the 2x2 table), which keeps its coverage when few images disagree, unlike the plain Wald interval;
- p-value: exact two-sided McNemar (binomial on the b + c images that only one model gets right).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..common.progress import image_bar
from ..data import load_rgb_image
from ..errors import SqueezeNetError
from ..models import InferenceModel, input_device
from .fidelity import SNR_LIMIT_DB, FidelityAccumulator
from .folders import labelled_images

Z95 = 1.959963984540054


@dataclass
class PairedResult:
    n: int  # images both models saw
    skipped: int
    top1: float  # candidate
    top5: float
    reference_top1: float
    reference_top5: float
    agreement: float  # same top-1 class
    kl: float  # mean KL(reference || candidate), nats
    top1_diff: float  # candidate - reference
    top1_diff_low: float  # 95% interval
    top1_diff_high: float
    mcnemar_p: float
    only_candidate_right: int  # b
    only_reference_right: int  # c
    snr_db: float = SNR_LIMIT_DB  # input-dependent logit signal over the candidate's error on it
    reference_classes: int = 0  # distinct top-1 answers of the reference
    reference_top_share: float = 0.0  # share of images with the reference's most frequent answer
    skipped_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("skipped_files")
        d["interval"] = "Agresti-Min adjusted Wald, 95%"
        return d


def paired_difference(b: int, c: int, n: int) -> tuple[float, float, float, float]:
    """Top-1 difference (b - c) / n of two models on n paired images, where b images only the candidate gets right
    and c only the reference: (difference, 95% low, 95% high, exact two-sided McNemar p)."""
    if n < 1 or b < 0 or c < 0 or b + c > n:
        raise SqueezeNetError(f"paired counts b={b}, c={c} do not fit n={n}")
    bb, cc, nn = b + 0.5, c + 0.5, n + 2
    d = (bb - cc) / nn
    se = math.sqrt(max(bb + cc - (bb - cc) ** 2 / nn, 0.0)) / nn
    k, m = min(b, c), b + c
    p = 1.0 if m == 0 else min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2**m)
    return (b - c) / n, max(-1.0, d - Z95 * se), min(1.0, d + Z95 * se), p


@torch.inference_mode()
def compare(candidate: InferenceModel, reference: InferenceModel, data: str | Path, *, batch_size: int = 50,
            progress: bool = True) -> PairedResult:
    """Both models on the labelled image folder ``data`` (as :func:`evaluate` reads it), paired image by image."""
    ref, cand = reference.meta, candidate.meta
    if ref.num_classes != cand.num_classes:
        raise SqueezeNetError(f"the candidate has {cand.num_classes} classes, the reference {ref.num_classes}: "
                              "not the same task")
    found = labelled_images(ref, data)
    t_ref, t_cand = ref.preprocessing.transforms(), cand.preprocessing.transforms()
    dev_ref, dev_cand = input_device(reference), input_device(candidate)
    reference.eval()
    candidate.eval()
    k = min(5, ref.num_classes)
    counts = {"n": 0, "ref1": 0, "ref5": 0, "cand1": 0, "cand5": 0, "b": 0, "c": 0}
    outputs, skipped = FidelityAccumulator(), []
    with image_bar("compare", len(found.samples), progress) as advance:
        for start in range(0, len(found.samples), batch_size):
            xs_ref, xs_cand, labels = [], [], []
            for path, label in found.samples[start:start + batch_size]:
                try:
                    pixels = load_rgb_image(path)
                except SqueezeNetError as exc:
                    skipped.append(str(exc))
                    continue
                xs_ref.append(t_ref(pixels))
                xs_cand.append(t_cand(pixels))
                labels.append(label)
            advance(min(batch_size, len(found.samples) - start))
            if not labels:
                continue
            y = torch.tensor(labels)
            lr = reference(torch.stack(xs_ref).to(dev_ref)).double().cpu()
            lc = candidate(torch.stack(xs_cand).to(dev_cand)).double().cpu()
            outputs.update(lr, lc)
            top_r, top_c = lr.topk(k, 1).indices, lc.topk(k, 1).indices
            right_r, right_c = top_r[:, 0] == y, top_c[:, 0] == y
            counts["n"] += len(labels)
            counts["ref1"] += int(right_r.sum())
            counts["cand1"] += int(right_c.sum())
            counts["ref5"] += int((top_r == y[:, None]).any(1).sum())
            counts["cand5"] += int((top_c == y[:, None]).any(1).sum())
            counts["b"] += int((right_c & ~right_r).sum())
            counts["c"] += int((right_r & ~right_c).sum())
    n = counts["n"]
    if n == 0:
        raise SqueezeNetError(f"{data}: none of the {len(found.samples)} images could be read")
    diff, low, high, p = paired_difference(counts["b"], counts["c"], n)
    f = outputs.result()
    return PairedResult(n, len(skipped), counts["cand1"] / n, counts["cand5"] / n, counts["ref1"] / n, counts["ref5"] / n,
                        f.agreement, f.kl, diff, low, high, p, counts["b"], counts["c"], f.snr_db, f.reference_classes,
                        f.reference_top_share, skipped)
