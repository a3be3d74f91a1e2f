"""The measures every gate reads (squeezenet.inference.fidelity), on hand-made logits with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from squeezenet.errors import SqueezeNetError
from squeezenet.inference.fidelity import (
    DEFAULT_GATE,
    SNR_LIMIT_DB,
    FidelityAccumulator,
    FidelityGate,
    fidelity,
)


def _one_class_reference(n: int = 200, classes: int = 10) -> torch.Tensor:
    """Logits whose top-1 is class 0 for every image while the rest of the outputs vary with the image."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(n, classes, generator=g)
    logits[:, 0] += 100
    return logits


def test_snr_against_a_direct_computation() -> None:
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(50, 7, generator=g) * 4 + torch.arange(7.0)  # a bias per class, shifts per image below
    reference += torch.randn(50, 1, generator=g)
    candidate = reference + 0.2 * torch.randn(50, 7, generator=g)
    r = reference.double() - reference.double().mean(1, keepdim=True)
    c = candidate.double() - candidate.double().mean(1, keepdim=True)
    middle = r.median(0).values
    ratios = sorted(float(((c[i] - r[i]) ** 2).sum() / ((r[i] - middle) ** 2).sum()) for i in range(len(r)))
    expected = -10 * math.log10(ratios[(len(ratios) - 1) // 2])  # torch's median: the lower of the middle two
    f = fidelity(reference, candidate)
    assert f.snr_db == pytest.approx(expected, abs=1e-5)  # (the reference is kept in float32)
    p, q = reference.double().softmax(1), candidate.double().softmax(1)
    assert f.kl == pytest.approx(float((p * (p / q).log()).sum(1).mean()), rel=1e-9)
    assert f.agreement == float((reference.argmax(1) == candidate.argmax(1)).double().mean())


def test_shifts_per_image_and_a_common_bias_are_not_errors_but_ignoring_the_input_is() -> None:
    reference = _one_class_reference()
    shifted = reference + torch.randn(len(reference), 1)  # softmax is unchanged (up to float32 rounding of the sum)
    assert fidelity(reference, shifted).snr_db > 100 and fidelity(reference, reference).snr_db == SNR_LIMIT_DB
    constant = reference.median(0, keepdim=True).values.expand_as(reference)  # a typical answer, for every image
    f = fidelity(reference, constant)
    assert f.agreement == 1.0 and abs(f.snr_db) < 0.1  # agreement blind; 0 dB: nothing of the input is kept
    noise = reference + 3 * torch.randn(reference.shape, generator=torch.Generator().manual_seed(1))
    f = fidelity(reference, noise)
    assert f.agreement == 1.0 and f.snr_db < 0 and f.reference_classes == 1 and f.reference_top_share == 1.0
    assert not DEFAULT_GATE.passes(f) and DEFAULT_GATE.shortfalls(f) == [f"logit SNR {f.snr_db:.1f} dB < 15 dB"]
    biased = reference.clone()
    biased[:, 1] += 200  # the input-dependent part kept exactly, one class's bias wrong: every answer changes
    f = fidelity(reference, biased)
    assert f.agreement == 0.0 and f.snr_db < 0


def test_one_image_far_from_the_others_does_not_decide_the_snr() -> None:
    """An int8 file calibrated with one image 1000x brighter than the rest is exact on that image and wrong on
    the others: measured on those images, an energy ratio over all of them read 49 dB; per image it is 0 dB."""
    reference = _one_class_reference()
    reference[0] *= 1000
    candidate = reference.median(0, keepdim=True).values.expand_as(reference).clone()
    candidate[0] = reference[0]
    assert fidelity(reference, candidate).snr_db < 0.5


def test_non_finite_outputs_are_the_worst_not_the_best() -> None:
    reference = _one_class_reference()
    broken = reference.clone()
    broken[:, 3] = float("nan")
    assert fidelity(reference, broken).snr_db == -SNR_LIMIT_DB and not DEFAULT_GATE.passes(fidelity(reference, broken))


def test_accumulating_batches_equals_one_pass() -> None:
    g = torch.Generator().manual_seed(2)
    reference = torch.randn(101, 12, generator=g) * 3
    candidate = reference + 0.5 * torch.randn(101, 12, generator=g)
    acc = FidelityAccumulator()
    for start in range(0, 101, 17):
        acc.update(reference[start:start + 17], candidate[start:start + 17])
    batched, whole = acc.result(), fidelity(reference, candidate)
    assert batched.images == whole.images == 101 and batched.agreement == whole.agreement
    assert batched.snr_db == pytest.approx(whole.snr_db, abs=1e-5) and batched.kl == pytest.approx(whole.kl, rel=1e-12)


def test_bad_pairs_and_gates_are_refused() -> None:
    with pytest.raises(SqueezeNetError, match="cannot be paired"):
        fidelity(torch.zeros(3, 4), torch.zeros(3, 5))
    acc = FidelityAccumulator()
    acc.update(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(SqueezeNetError, match="cannot be paired"):
        acc.update(torch.zeros(2, 5), torch.zeros(2, 5))
    with pytest.raises(SqueezeNetError, match="no images"):
        FidelityAccumulator().result()
    with pytest.raises(SqueezeNetError, match="must lie in"):
        FidelityGate(1.5, 10)
    with pytest.raises(SqueezeNetError, match="nan"):
        FidelityGate(0.9, float("nan"))


def test_the_cli_spells_the_library_defaults() -> None:
    from squeezenet.cli.deployment import MIN_AGREEMENT, MIN_SNR_DB

    assert (MIN_AGREEMENT, MIN_SNR_DB) == (DEFAULT_GATE.min_agreement, DEFAULT_GATE.min_snr_db)
