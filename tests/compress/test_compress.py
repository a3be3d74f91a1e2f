"""Pruning, k-means weight sharing, batch-norm folding and the compression pipeline."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import require_shared
from squeezenet.compress import (
    FineTune,
    PostTraining,
    compress_model,
    fold_batch_norm,
    kmeans_1d,
    parse_bits,
    parse_targets,
    prune,
    quantize,
    remove_masks,
    remove_sharing,
)
from squeezenet.compress.kmeans import assign, optimal_centroids
from squeezenet.compress.prune import apply_counts, gradual_fraction
from squeezenet.compress.sensitivity import plot_sensitivity, sensitivity
from squeezenet.models import create_model, effective_state_dict, paper_layer_names, prunable_layers
from squeezenet.weights import load_weights, read_weights_file, save_weights


def _path(model, name: str) -> str:
    return {v: k for k, v in paper_layer_names(model).items()}[name]


def _model(**kw):
    torch.manual_seed(0)
    return create_model("squeezenet1_1_cifar", **kw)


def test_density_targets_per_layer_by_paper_names_and_patterns() -> None:
    model = _model()
    targets = parse_targets("0.3,conv1=1,fire9=0.5,*/squeeze=0.2,fire2/expand3x3=0.1", "density", model)
    names = {v: k for k, v in paper_layer_names(model).items()}
    prune(model, targets)
    layers = prunable_layers(model)

    def density(name):
        w = layers[names[name]].weight
        return float((w != 0).sum()) / w.numel()

    assert density("conv1") == 1.0
    assert density("fire9/expand3x3") == pytest.approx(0.5, abs=1e-3)  # the Fire name beats the pattern
    assert density("fire9/squeeze") == pytest.approx(0.5, abs=1e-3)
    assert density("fire4/squeeze") == pytest.approx(0.2, abs=1e-3)
    assert density("fire2/expand3x3") == pytest.approx(0.1, abs=1e-3)
    assert density("fire5/expand1x1") == pytest.approx(0.3, abs=1e-3)
    with pytest.raises(ValueError, match="no layer called fire99"):
        parse_targets("0.3,fire99=0.1", "density", model)
    with pytest.raises(ValueError, match="not NUMBER"):
        parse_targets("0.3,conv1=x", "density", model)


def test_quality_threshold_is_han_et_al_rule() -> None:
    model = _model()
    layer = prunable_layers(model)[_path(model, "fire2/expand3x3")]
    w = layer.weight.detach().clone()
    prune(model, parse_targets(0.8, "quality", model))
    expected = int((w.abs() > 0.8 * w.std()).sum())
    assert int((layer.weight != 0).sum()) == expected
    kept = layer.weight[layer.weight != 0].abs()
    assert kept.min() > 0.8 * w.std() - 1e-7


def test_masks_hold_through_training_steps() -> None:
    model = _model()
    prune(model, parse_targets(0.25, "density", model))
    masks = {p: (m.weight != 0).clone() for p, m in prunable_layers(model).items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        loss = F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for path, layer in prunable_layers(model).items():
        assert torch.equal(layer.weight != 0, masks[path]) or ((layer.weight != 0) <= masks[path]).all(), path
        assert (layer.weight[~masks[path]] == 0).all()
    saved = effective_state_dict(model)
    assert "features.0.weight" in saved and not any("parametrizations" in k for k in saved)
    fresh = _model()
    fresh.load_state_dict(saved)  # a pruned model saves as the plain architecture
    remove_masks(model)
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in saved)


def test_gradual_schedule_is_cubic_and_monotone_and_never_regrows() -> None:
    values = [gradual_fraction(p / 20, 0.0, 0.75) for p in range(21)]
    assert values[0] == 0.0 and values[-1] == 1.0 and values == sorted(values)
    assert gradual_fraction(0.375, 0.0, 0.75) == pytest.approx(1 - 0.5**3)
    model = _model()
    path = _path(model, "fire3/expand3x3")
    layer = prunable_layers(model)[path]
    n = layer.weight.numel()
    apply_counts(model, {path: n // 2})
    first = layer.weight != 0
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(-3.0)  # magnitudes change; pruned ones must stay pruned
    apply_counts(model, {path: n // 4})
    assert ((layer.weight != 0) <= first).all() and int((layer.weight != 0).sum()) == n // 4


@pytest.mark.parametrize("total_steps", [8, 40, 1000])
def test_gradual_pruning_reaches_its_target_with_training_left_however_short_the_run(total_steps) -> None:
    from types import SimpleNamespace

    from squeezenet.compress.finetune import GradualPruning

    model = _model()
    layers = prunable_layers(model)
    final = {p: m.weight.numel() // 5 for p, m in layers.items()}
    pruning = GradualPruning({p: m.weight.numel() for p, m in layers.items()}, final, end=0.6)
    trainer = SimpleNamespace(estimated_stepping_batches=total_steps, global_step=0)
    module = SimpleNamespace(model=model, progress=lambda: trainer.global_step / total_steps)
    pruning.on_train_start(trainer, module)  # type: ignore[arg-type]
    reached = None
    for step in range(total_steps):  # as Lightning calls it, before each optimizer step
        trainer.global_step = step
        pruning.on_train_batch_start(trainer, module, None, step)  # type: ignore[arg-type]
        kept = {p: int((m.weight != 0).sum()) for p, m in layers.items()}
        if reached is None and kept == final:
            reached = step
    # the target is reached within the pruning window (plus one interval), leaving a third of the run to recover;
    # a fixed 20-step interval reached it only in on_train_end for runs of 8 steps
    assert reached is not None and reached <= 0.6 * total_steps + pruning.every
    assert total_steps - reached >= 0.3 * total_steps


def test_optimal_kmeans_matches_brute_force_and_beats_linear() -> None:
    rng = np.random.default_rng(1)
    points = np.sort(rng.standard_normal(10))
    best = min(
        sum(((points[a:b] - points[a:b].mean()) ** 2).sum() for a, b in zip((0, *cuts), (*cuts, 10)))
        for cuts in itertools.combinations(range(1, 10), 3)
    )
    c = optimal_centroids(points, np.ones(10), 4)
    assert ((points - c[assign(points, c)]) ** 2).sum() == pytest.approx(best)
    x = rng.laplace(size=20_000)
    sse = {init: ((x - (c := kmeans_1d(x, 16, init))[assign(x, c)]) ** 2).sum() for init in ("linear", "optimal")}
    assert sse["optimal"] < sse["linear"]
    assert kmeans_1d(np.array([0.5, -1.0, 0.5]), 8).tolist() == [-1.0, 0.5]  # few values: kept exactly


def test_quantize_shares_weights_and_centroid_gradient_is_sum_of_members() -> None:
    model = _model()
    prune(model, parse_targets(0.5, "density", model))
    report = quantize(model, parse_bits("3,conv10=2", model))
    model.eval()  # no dropout: both forward passes below must be the same function
    assert {r.path: r.bits for r in report}["classifier.1"] == 2
    layer = prunable_layers(model)[_path(model, "fire2/expand3x3")]
    sharing = layer.parametrizations.weight[0]
    x = torch.randn(2, 3, 32, 32)
    loss = model(x).square().sum()
    loss.backward()
    # gradient of the loss w.r.t. the dense weight, by hand: the same forward with the weight as a leaf
    dense = layer.weight.detach().clone().requires_grad_(True)
    torch.nn.utils.parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    layer.weight = torch.nn.Parameter(dense)
    model.zero_grad()
    model(x).square().sum().backward()
    g = layer.weight.grad
    expected = torch.zeros(sharing.codebook.numel()).index_add_(0, sharing.codes[sharing.mask], g[sharing.mask])
    assert torch.allclose(sharing.codebook.grad, expected, rtol=1e-4, atol=1e-6)
    remove_sharing(model)
    for path, layer in prunable_layers(model).items():
        values = torch.unique(layer.weight[layer.weight != 0])
        assert values.numel() <= (4 if path == "classifier.1" else 8), path
    with pytest.raises(ValueError, match="whole numbers from 1 to 16"):
        parse_bits("0", model)
    with pytest.raises(ValueError, match="20 bits for fire2/squeeze;"):  # the paper's name, not the module path
        parse_bits("4,fire2/squeeze=20", model)


def test_fine_tuning_problems_are_refused_before_any_work(tmp_path) -> None:
    from squeezenet.compress import compress_model
    from squeezenet.errors import SqueezeNetError
    from squeezenet.weights import Preprocessing

    model = _model()
    work = tmp_path / "runs"
    model.meta = model.meta.replace(preprocessing=Preprocessing("cifar", resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3))
    with pytest.raises(ValueError, match="not a data folder"):
        compress_model(model, FineTune(data=str(tmp_path / "nowhere"), density=0.5, bits=4, finetune_epochs=1),
                       work_dir=work)
    assert not work.exists()  # refused before the work directory was claimed, no pruning done
    with pytest.raises(SqueezeNetError, match="fine-tuning with no epochs"):
        FineTune(data="cifar10", density=0.5, bits=2, centroid_epochs=0)
    with pytest.raises(SqueezeNetError, match="needs a work directory"):
        compress_model(model, FineTune(data="cifar10", density=0.5))
    with pytest.raises(TypeError, match="calibration"):  # a combination with no meaning cannot be written
        FineTune(data="cifar10", calibration="images/")  # type: ignore[call-arg]


def test_fold_batch_norm_same_function_plain_architecture() -> None:
    model = _model(batch_norm=True).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    plain = fold_batch_norm(model)
    assert not plain.config.batch_norm and not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-4)


def test_post_training_compression_writes_a_loadable_sqz(tmp_path) -> None:
    model = _model(batch_norm=True).eval()
    model.meta = model.meta.replace(classes=[f"c{i}" for i in range(10)])
    from squeezenet.weights import Preprocessing

    model.meta = model.meta.replace(preprocessing=Preprocessing("cifar", resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3))
    compressed, log = compress_model(model, PostTraining(density="0.3,conv1=1", bits=4))
    path = save_weights(compressed, tmp_path / "m.sqz")
    loaded = load_weights(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), compressed(x))
    assert log.densities[_path(compressed, "conv1")] == 1.0
    assert log.densities[_path(compressed, "fire2/squeeze")] == pytest.approx(0.3, abs=1e-3)
    fp32 = 4 * sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    assert path.stat().st_size < fp32 / 15
    assert loaded.meta.classes == model.meta.classes and loaded.meta.preprocessing == model.meta.preprocessing


def test_sensitivity_table_and_plot(tmp_path) -> None:
    model = _model().eval()
    images, labels = torch.randn(40, 3, 32, 32), torch.randint(0, 10, (40,))
    with torch.no_grad():
        labels = model(images).argmax(1)  # the unpruned model is right on every image
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = sensitivity(model, images, labels, [0.5, 0.01], progress=False)
    assert result.baseline == 1.0 and len(result.top1) == len(prunable_layers(model))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model left unchanged
    assert min(min(s) for s in result.top1.values()) < 1.0  # pruning a layer to 1% changes some answers
    png = plot_sensitivity(result, tmp_path / "s.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_sensitivity(result, tmp_path / "s.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match="written as .png, .svg, .pdf"):
        plot_sensitivity(result, tmp_path / "s.txt")
    assert not (tmp_path / "s.txt").exists()


@pytest.mark.slow
def test_compress_cli_with_fine_tuning_on_cifar_subset(tmp_path) -> None:
    root = require_shared("cifar10").parent
    base = tmp_path / "base.safetensors"
    _cifar_base(base)
    out = tmp_path / "small.sqz"
    cmd = [sys.executable, "-m", "squeezenet", "compress", "-w", str(base), "-o", str(out), "--data", "cifar10",
           "--data-root", str(root), "--density", "0.2,conv1=1", "--bits", "4", "--finetune-epochs", "2",
           "--set", "data.limit_train=512", "--set", "data.limit_val=128", "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert [p["phase"] for p in summary["phases"]] == ["prune", "centroids"]
    assert (tmp_path / "small-runs" / "prune" / "curves.png").is_file()
    weights = read_weights_file(out).state_dict
    conv = weights[_path(load_weights(out), "fire2/expand3x3") + ".weight"]
    assert float((conv != 0).float().mean()) == pytest.approx(0.2, abs=1e-3)
    assert torch.unique(conv[conv != 0]).numel() <= 16
    assert summary["ratio_to_input"] > 15
    info = subprocess.run([sys.executable, "-m", "squeezenet", "info", str(out)], capture_output=True, text=True)
    assert info.returncode == 0 and "fire2/expand3x3" in info.stdout and "ratio" in info.stdout


@pytest.mark.slow
def test_compress_under_torchrun_prunes_during_training_and_writes_once(tmp_path) -> None:
    root = require_shared("cifar10").parent
    base = tmp_path / "base.safetensors"
    _cifar_base(base)
    out = tmp_path / "ddp.sqz"
    # 2 epochs x 4 steps: the masks change on steps 0-4, after DDP has wrapped the model
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "squeezenet",
           "compress", "-w", str(base), "-o", str(out), "--data", "cifar10", "--data-root", str(root),
           "--density", "0.2,conv1=1", "--bits", "4", "--finetune-epochs", "2",
           "--set", "data.limit_train=512", "--set", "data.limit_val=128"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("smaller") == 1 and result.stderr.count("starting pruning") == 1  # rank 0 speaks
    assert json.loads((tmp_path / "ddp-runs" / "prune" / "metrics.json").read_text())["world_size"] == 2
    weights = read_weights_file(out).state_dict
    conv = weights[_path(load_weights(out), "fire2/expand3x3") + ".weight"]
    assert float((conv != 0).float().mean()) == pytest.approx(0.2, abs=1e-3)
    assert torch.unique(conv[conv != 0]).numel() <= 16


def _cifar_base(path) -> None:
    from squeezenet.data.training import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
    from squeezenet.weights import Preprocessing

    model = _model(batch_norm=True, stem_pool=True)
    model.meta = model.meta.replace(classes=list(CIFAR10_CLASSES))
    model.meta = model.meta.replace(
        preprocessing=Preprocessing("cifar10", resize=32, crop=32, mean=CIFAR10_MEAN, std=CIFAR10_STD))
    save_weights(model, path)


@pytest.mark.slow
def test_killed_compress_resumes_to_the_same_result(tmp_path, capsys) -> None:
    import csv

    root = require_shared("cifar10").parent
    _cifar_base(tmp_path / "base.safetensors")
    options = ["-w", str(tmp_path / "base.safetensors"), "--data", "cifar10", "--data-root", str(root),
               "--density", "0.2,conv1=1", "--bits", "4", "--finetune-epochs", "2",
               "--set", "data.limit_train=512", "--set", "data.limit_val=128"]  # 4 steps of 128 an epoch
    cmd = lambda out, *extra: [sys.executable, "-m", "squeezenet", "compress", *options, "-o", str(out), *extra]
    from squeezenet.cli import main  # the run never killed, the refusals and the resume in-process: only the killed
    # run needs a process of its own

    assert main(cmd(tmp_path / "ref.sqz")[3:]) == 0

    worker = Path(__file__).parents[1] / "train" / "fault_worker.py"
    killed = subprocess.run([sys.executable, str(worker), *cmd(tmp_path / "killed.sqz")[3:]],
                            env={**os.environ, "SIGNAL_AT_STEP": "6", "SIGNAL": "KILL"}, capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL as step 6 begins: inside pruning epoch 2 (the last)
    work = tmp_path / "killed-runs"
    assert not (tmp_path / "killed.sqz").exists() and not (work / "pruned.safetensors").exists()

    assert main(cmd(tmp_path / "killed.sqz")[3:]) == 1  # not over the old runs
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err
    assert main(cmd(tmp_path / "killed.sqz", "--resume", "--bits", "5")[3:]) == 1
    assert "other settings (bits)" in capsys.readouterr().err

    capsys.readouterr()
    assert main(cmd(tmp_path / "killed.sqz", "--resume")[3:]) == 0
    assert "resuming pruning" in capsys.readouterr().err
    ref, got = read_weights_file(tmp_path / "ref.sqz").state_dict, read_weights_file(tmp_path / "killed.sqz").state_dict
    assert list(ref) == list(got)
    for key in ref:  # the same masks and (up to float reduction order) the same values as the run never killed
        assert torch.equal(ref[key] != 0, got[key] != 0), key
        torch.testing.assert_close(got[key], ref[key], rtol=0, atol=1e-5)
    for run in (tmp_path / "ref-runs", work):
        ckpt = torch.load(run / "prune" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
        assert ckpt["epoch"] == 1  # the last epoch, whether or not it improved val/top-1
        rows = list(csv.DictReader((run / "prune" / "logs" / "csv" / "metrics.csv").open()))
        assert [r["epoch"] for r in rows if r["val/top1"]] == ["0", "1"]  # epoch 0's log survived the kill
        steps = [r["step"] for r in rows if r["train/loss_step"]]
        assert len(steps) == len(set(steps))  # the interrupted epoch's rows are not doubled


def test_compress_flags_help_and_defaults_come_from_the_method_dataclasses(tmp_path) -> None:
    """Every field of every method is a flag whose help quotes the dataclass's default; the flags pick the method,
    and what is not given is the dataclass's default (the CLI repeats none)."""
    import dataclasses

    from squeezenet.cli.compression import method_from_args
    from squeezenet.cli.main import build_parser
    from squeezenet.compress import METHODS, Reconstruct, SideDataOnly
    from squeezenet.errors import SqueezeNetError

    parser, _ = build_parser()
    verb = next(a for a in parser._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
                if any(o.dest == "max_bytes" for o in a._actions))
    flags = {o.dest: o for o in verb._actions}
    for cls in METHODS:
        for f in dataclasses.fields(cls):
            action = flags["options" if f.name == "overrides" else f.name]
            assert action.default in (None, []), f.name  # no default of its own: the method's applies
            if f.default not in (dataclasses.MISSING, None) and f.name != "overrides":
                assert str(f.default) in action.help, (cls.__name__, f.name, action.help)

    def method(*argv: str):
        return method_from_args(verb.parse_args(["-w", "w.pth", "-o", "o.sqz", *argv]))

    assert method() == PostTraining()
    assert method("--max-bytes", "500000") == SideDataOnly(max_bytes=500_000)
    assert method("--calibration", "calib", "--bits", "5") == Reconstruct(calibration="calib", bits="5")
    tuned = method("--data", "cifar10", "--density", "0.4", "--set", "batch_size=8")
    assert tuned == FineTune(data="cifar10", density="0.4", overrides={"batch_size": 8})
    assert (tuned.centroid_epochs, tuned.init, tuned.schedule) == (1, "linear", "gradual")
    with pytest.raises(SqueezeNetError, match=r"^--schedule: not for compression with --calibration"):
        method("--calibration", "calib", "--schedule", "oneshot")
