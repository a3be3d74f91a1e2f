"""Post-training repair from unlabelled images, side data on a grid, and the byte budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import image_folder, require_shared
from squeezenet.compress import Reconstruct, compress_model
from squeezenet.compress.byte_budget import fit_with_data, fit_without_data
from squeezenet.compress.grid_plan import allocate, short_step
from squeezenet.compress.kmeans import kmeans_1d
from squeezenet.compress.reconstruct import (
    InputStatistics,
    all_input_statistics,
    gptq,
    input_columns,
    nearest,
    output_error,
    prune_mask,
    reconstruct,
    stages,
    uniform_grid,
)
from squeezenet.compress.side_grid import snap_side_values
from squeezenet.models import create_model, prunable_layers
from squeezenet.weights import Preprocessing, load_weights, save_weights, sqz_size, sqz_tensor_bytes

DC = ("deep-compression", "compressed_SqueezeNet.net")


def _correlated_inputs(n: int = 400, d: int = 48, seed: int = 0) -> torch.Tensor:
    """Activations with strongly correlated, unequal channels: where rounding each weight alone is worst."""
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g) * torch.logspace(0, -1.5, d)[None, :]
    return torch.relu(torch.randn(n, d, generator=g) @ mixing.T + 0.3)


def test_gptq_with_identity_moment_is_nearest_rounding() -> None:
    # with H = I the output error is the weights' own error: no column can absorb another's, so the
    # optimum (and GPTQ) is plain rounding -- an independent check of the update algebra
    w = torch.randn(16, 24, dtype=torch.float64)
    grid = uniform_grid(w, 0.1)
    q = gptq(w, torch.eye(24, dtype=torch.float64), grid, damping=0.0)
    assert torch.equal(q, nearest(w, grid.double()))


def test_reconstruction_lowers_the_layer_output_error_versus_plain_kmeans() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 32)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) > 0.5)  # pruned half: the mask must hold
    x = _correlated_inputs()
    stats = InputStatistics.of(layer, [x])
    w = layer.weight.detach()
    kept = w[w != 0].double().numpy()
    codebook = torch.from_numpy(kmeans_1d(kept, 8, "optimal").astype(np.float64))
    plain = torch.where(w != 0, nearest(w.double(), codebook).float(), 0.0)  # Deep Compression: nearest centroid
    repaired = gptq(w, stats.hessian, codebook)
    e_plain, e_repaired = output_error(plain - w, stats.hessian), output_error(repaired - w, stats.hessian)
    assert e_repaired < 0.7 * e_plain, (e_repaired, e_plain)
    assert torch.equal(repaired == 0, w == 0)  # pruned stay pruned, kept stay kept (no centroid is 0)
    assert set(repaired[w != 0].double().unique().tolist()) <= set(codebook.tolist())
    # the error is measured on outputs, directly: the same ranking holds on the activations themselves
    assert ((x @ (repaired - w).T) ** 2).mean() < ((x @ (plain - w).T) ** 2).mean()


def test_input_columns_match_the_convolution() -> None:
    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)
    x = torch.randn(2, 3, 9, 9)
    cols = input_columns(conv, x)
    out = conv(x).permute(0, 2, 3, 1).reshape(-1, 5)
    assert torch.allclose(cols @ conv.weight.reshape(5, -1).T + conv.bias, out, atol=1e-5)


def _small_model():
    torch.manual_seed(0)
    model = create_model("squeezenet1_1_cifar").eval()
    model.meta = model.meta.replace(preprocessing=Preprocessing("cifar", resize=32, crop=32, mean=(0.5,) * 3,
                                                                std=(0.25,) * 3))
    with torch.no_grad():  # pruned to a third, like a Deep Compression model
        for layer in prunable_layers(model).values():
            w = layer.weight
            w.mul_(w.abs() >= w.abs().flatten().quantile(0.67))
    return model


def _images(n: int = 48, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 3, 8, 8, generator=g)  # smooth images: correlated neighbouring pixels
    return torch.nn.functional.interpolate(base, size=32, mode="bilinear", align_corners=False)


def _kl(reference: torch.nn.Module, candidate: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        lr, lc = reference(x).double().log_softmax(1), candidate(x).double().log_softmax(1)
    return float((lr.exp() * (lr - lc)).sum(1).mean())


def test_stages_compose_to_the_forward_pass() -> None:
    model = _small_model()
    x = _images(4)
    out = x
    for stage in stages(model):
        out = stage(out)
    with torch.no_grad():
        assert torch.allclose(out, model(x), atol=1e-6)


def test_sequential_reconstruction_keeps_the_outputs_better_than_rounding() -> None:
    reference = _small_model()
    x_cal, x_test = _images(48, seed=1), _images(32, seed=2)
    rounded, repaired = _small_model(), _small_model()
    steps = {p: short_step(float(m.weight.detach()[m.weight != 0].pow(2).mean().sqrt()) / 4)
             for p, m in prunable_layers(reference).items()}
    with torch.no_grad():
        for p, m in prunable_layers(rounded).items():
            m.weight.copy_(torch.where(m.weight != 0, nearest(m.weight.double(), uniform_grid(m.weight, steps[p])), 0.0))
    errors = reconstruct(repaired, x_cal, lambda p, w: uniform_grid(w, steps[p]))
    assert set(errors) == set(prunable_layers(repaired))
    for p, m in prunable_layers(repaired).items():
        assert torch.equal(m.weight != 0, prunable_layers(reference)[p].weight != 0)
    assert _kl(reference, repaired, x_test) < 0.8 * _kl(reference, rounded, x_test)  # held-out images


@pytest.mark.slow
@pytest.mark.parametrize("max_bytes", [160_000])
def test_the_byte_budget_is_never_exceeded(tmp_path, max_bytes) -> None:
    model = _small_model()
    plan, size = fit_with_data(model, _images(48), max_bytes, sqz_tensor_bytes)
    path = save_weights(model, tmp_path / "m.sqz", max_bytes=max_bytes)
    assert path.stat().st_size == size <= max_bytes
    assert any(lp.choice.step is not None for lp in plan.layers)
    assert plan.predicted_kl >= 0 and len(plan.layers) == len(prunable_layers(model))


@pytest.mark.slow
def test_a_budget_out_of_reach_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="out of reach"):
        fit_with_data(_small_model(), _images(16), 2_000, sqz_tensor_bytes)
    with pytest.raises(ValueError, match="out of reach without calibration"):
        fit_without_data(_small_model(), 2_000, sqz_size)


def test_save_refuses_a_file_over_max_bytes_and_writes_nothing(tmp_path) -> None:
    model = _small_model()
    with pytest.raises(ValueError, match="more than max_bytes"):
        save_weights(model, tmp_path / "m.sqz", max_bytes=1_000)
    assert not (tmp_path / "m.sqz").exists()


def test_greedy_allocation_prefers_the_cheapest_loss_per_byte() -> None:
    from squeezenet.compress.grid_plan import LayerPlan, Option

    a = LayerPlan("a", "a", [Option(None, 100, 0, 0.0), Option(1.0, 50, 1, 0.5)])  # saves 50 for 0.5
    b = LayerPlan("b", "b", [Option(None, 100, 0, 0.0), Option(1.0, 50, 1, 0.1)])  # saves 50 for 0.1
    plan = allocate([a, b], fixed_bytes=10, max_bytes=160)
    assert (a.chosen, b.chosen) == (0, 1) and plan.predicted_bytes == 160
    plan = allocate([a, b], fixed_bytes=10, max_bytes=210)  # room for both as they are
    assert (a.chosen, b.chosen) == (0, 0)


@pytest.mark.slow
def test_compress_with_calibration_folder_and_budget_through_the_pipeline(tmp_path) -> None:
    folder = image_folder(tmp_path / "calib", 12)
    (folder / "broken.jpg").write_bytes(b"not an image")  # skipped with a warning
    model = _small_model()
    compressed, log = compress_model(model, Reconstruct(calibration=folder, max_bytes=200_000))
    assert sqz_size(compressed) <= 200_000 and log.budget and "grid" in log.method
    compressed, log = compress_model(_small_model(), Reconstruct(calibration=folder, bits=4))
    assert all(q.centroids <= 16 for q in log.quantization) and "reconstruction" in log.method


def test_cli_budget_out_of_reach_is_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    from squeezenet.cli import main  # in-process: the verb's message and exit status are the subject

    model = _small_model()
    src = save_weights(model, tmp_path / "m.safetensors")
    out = tmp_path / "small.sqz"
    assert main(["compress", "-w", str(src), "--max-bytes", "3000", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "out of reach" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_published_model_keeps_every_answer_under_520000_bytes_without_images(tmp_path) -> None:
    net = require_shared(*DC)
    calib = require_shared("imagenet-calib")
    model = load_weights(net).eval()
    reference = load_weights(net).eval()
    how, size = fit_without_data(model, 520_000, sqz_size)
    assert size <= 520_000 - 256 and "grid" in how
    path = save_weights(model, tmp_path / "dc.sqz", max_bytes=520_000)
    from squeezenet.inference.preloaded import unlabelled_images

    x = unlabelled_images(reference.meta, calib, limit=40)
    with torch.no_grad():
        a, b = load_weights(path)(x), reference(x)
    assert float((a - b).abs().max()) <= 1e-3 and torch.equal(a.argmax(1), b.argmax(1))
    assert snap_side_values is not None


def test_all_input_statistics_match_one_layer_capture() -> None:
    model = _small_model()
    x = _images(8)
    every = all_input_statistics(model, x, batch_size=3)
    first = next(iter(prunable_layers(model).values()))
    alone = InputStatistics.of(first, [x])
    path = next(iter(prunable_layers(model)))
    assert torch.allclose(every[path].hessian, alone.hessian, rtol=1e-6, atol=1e-9)
    assert torch.allclose(every[path].mean, alone.mean, rtol=1e-6, atol=1e-9)


def test_rate_aware_rounding_trades_error_for_fewer_bits() -> None:
    from squeezenet.compress.grid_plan import symbol_bytes

    torch.manual_seed(0)
    w = torch.randn(32, 48) * (torch.rand(32, 48) > 0.4)
    stats = InputStatistics.of(torch.nn.Linear(48, 32), [_correlated_inputs()])
    grid = uniform_grid(w, 0.25)
    plain, rdo = gptq(w, stats.hessian, grid), gptq(w, stats.hessian, grid, rate=0.5)
    assert symbol_bytes(rdo) < symbol_bytes(plain)
    assert output_error(rdo - w, stats.hessian) > output_error(plain - w, stats.hessian)
    assert (rdo[w == 0] == 0).all()  # pruned stay pruned (kept ones may round to the grid's 0: fewer bytes)


@pytest.mark.slow
def test_cli_compress_with_calibration_and_budget_prints_the_choices(tmp_path, capsys) -> None:
    import json

    from squeezenet.cli import main

    folder = image_folder(tmp_path / "calib", 8)
    src = save_weights(_small_model(), tmp_path / "m.safetensors")
    out = tmp_path / "small.sqz"
    assert main(["compress", "-w", str(src), "--calibration", str(folder), "--max-bytes", "200000", "-o", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert out.stat().st_size <= 200_000 and summary["file_bytes"] == out.stat().st_size
    assert len(summary["budget"]) == 26
    assert {"layer", "step", "bytes", "output_error", "sensitivity", "kl"} <= set(summary["budget"][0])
    # what the command prints without --json, from the same summary (compressing again would only repeat the work)
    from rich.console import Console

    from squeezenet.report.compression import compression_report, print_compression_summary

    console = Console(record=True, width=200)
    print_compression_summary(compression_report(out), summary, console=console)
    text = console.export_text()
    assert "byte budget" in text and "predicted KL" in text and "reconstruction" in text


def test_extra_pruning_is_compensated_by_the_other_weights() -> None:
    """A share of the kept weights pruned (the smallest), the rest re-fitted by GPTQ with the mask: less output
    error than zeroing the same weights, and the mask is exactly the kept weights less that share."""
    torch.manual_seed(0)
    x = torch.randn(2000, 64) @ torch.randn(64, 64)  # correlated inputs: where compensation matters
    weight = torch.randn(32, 64) * (torch.rand(32, 64) < 0.6)
    h = (x.T @ x / len(x)).double()
    mask = prune_mask(weight, 0.3)
    kept = int((weight != 0).sum())
    assert int(mask.sum()) == kept - round(0.3 * kept) and not bool((mask & (weight == 0)).any())
    assert float(weight[mask].abs().min()) >= float(weight[(weight != 0) & ~mask].abs().max())
    compensated = gptq(weight, h, uniform_grid(weight, 1e-4), mask=mask)
    assert torch.equal(compensated != 0, mask)
    zeroed = torch.where(mask, weight, 0.0)
    assert output_error(compensated - weight, h) < 0.95 * output_error(zeroed - weight, h)  # 0.88 when written


@pytest.mark.slow
def test_the_budget_counts_the_mask_a_raw_layer_gains_on_a_grid() -> None:
    """Dense float weights are stored raw (zeros inline, no mask); on a grid each layer gets a mask stream.
    The prediction must include it (it was once 90 KB short on this model, 60% of the file)."""
    from squeezenet.compress.prune import parse_targets, prune, remove_masks

    torch.manual_seed(0)
    model = create_model("squeezenet1_1_cifar", num_classes=10).eval()
    prune(model, parse_targets(0.5, "density", model))  # conv weights with >65,536 distinct values: stored raw
    remove_masks(model)
    plan, size = fit_with_data(model, _images(16), 220_000, sqz_tensor_bytes)
    assert size <= 220_000 and abs(plan.predicted_bytes - size) < 0.03 * size, (plan.predicted_bytes, size)


def test_reconstruction_decodes_each_calibration_image_once(tmp_path, monkeypatch) -> None:
    import importlib

    images = importlib.import_module("squeezenet.data.images")  # where every reader decodes
    folder = image_folder(tmp_path / "calib", 6)
    decoded: list[str] = []
    real = images.load_rgb_image

    def counting(path):
        decoded.append(str(path))
        return real(path)

    monkeypatch.setattr(images, "load_rgb_image", counting)
    compressed, log = compress_model(_small_model(), Reconstruct(calibration=folder, density=0.6, bits=4))
    assert sorted(decoded) == sorted({*decoded}) and len(decoded) == 6  # every image once, one reading in all
    assert all(q.centroids <= 16 for q in log.quantization) and "reconstruction" in log.method
