"""Real training runs on small CIFAR-10 subsets: run directory, kill + resume, torchrun DDP (slow)."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import require_shared
from squeezenet.cli import main
from squeezenet.inference import evaluate
from squeezenet.weights import load_weights

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent  # the workers are beside these tests


@pytest.fixture(scope="module")
def data_root():
    return str(require_shared("cifar10").parent)


def _env(data_root: str) -> dict:
    return {**os.environ, "SQUEEZENET_DATA": data_root, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parents[1] / "src")}


SMALL = ["--set", "data.limit_train=1024", "--set", "data.limit_val=256", "--batch-size", "64",
         "--set", "time_budget_s=null", "--no-progress"]


def test_run_directory_is_complete_and_weights_are_usable(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", "cifar10", "--data-root", data_root, "-o", str(run), "--epochs", "2", *SMALL,
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for name in ("run.json", "metrics.json", "best.safetensors", "curves.png", "checkpoints/last.ckpt",
                 "logs/csv/metrics.csv"):
        assert (run / name).is_file(), name
    assert list((run / "logs" / "tb").glob("events.out.tfevents.*"))
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["epochs"] == 2 and metrics["train_images"] == 1024 and metrics["val_images"] == 256
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    assert metrics["images_per_s"] > 0 and metrics["train_time_s"] > 0

    model = load_weights(run / "best.safetensors")  # no flags: architecture, preprocessing, classes inside
    assert model.meta.classes[:2] == ("airplane", "automobile") and model.meta.preprocessing.crop == 32
    test = tmp_path / "test"
    for cls in model.meta.classes:  # eval the exported file on a small real test folder
        (test / cls).mkdir(parents=True)
        for f in sorted((Path(data_root) / "cifar10" / "test" / cls).iterdir())[:3]:
            shutil.copy(f, test / cls / f.name)
    result = evaluate(model, test, progress=False)
    assert result.n == 30 and result.skipped == 0

    with pytest.raises(SystemExit):  # argparse: --epochs 0 is rejected before anything runs
        main(["train", "--data", "cifar10", "-o", str(run), "--epochs", "0"])
    assert main(["train", "--data", "cifar10", "--data-root", data_root, "-o", str(run), *SMALL]) == 1
    assert "already holds a run" in capsys.readouterr().err


def test_torchrun_time_budget_stops_all_ranks_together(tmp_path, data_root):
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(TESTS / "ddp_worker.py"), str(out), str(tmp_path / "run"), data_root, "4"],
                          env=_env(data_root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]  # no rank left waiting for the other
    rank0 = torch.load(out / "rank0.pt", weights_only=True)
    rank1 = torch.load(out / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)  # same clock, same learning rates
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs"] < 50 and metrics["train_time_s"] >= 4.0


def _last_weights(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["state_dict"], ckpt["epoch"]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, data_root, capsys, monkeypatch):
    # 256 images an epoch (4 steps of 64): the SIGKILL lands as step 6 begins, in epoch 2 after its checkpoint-free
    # first batch, at the same batch on any CPU (tests/fault_worker.py). The run never killed and the resume run
    # in-process (as the detector's test does): only the killed run needs a process of its own.
    args = ["train", "--data", "cifar10", "-o", "{run}", "--epochs", "2", *SMALL, "--set", "data.limit_train=256",
            "--set", "data.limit_val=128"]
    cmd = lambda run: [a.format(run=run) for a in args]
    monkeypatch.setenv("SQUEEZENET_DATA", data_root)

    reference = tmp_path / "reference"
    assert main(cmd(reference)) == 0

    killed = tmp_path / "killed"
    done = subprocess.run([sys.executable, str(TESTS / "fault_worker.py"), *cmd(killed)],
                          env={**_env(data_root), "SIGNAL_AT_STEP": "6", "SIGNAL": "KILL"}, capture_output=True,
                          timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    _, epoch = _last_weights(killed)  # loads: the checkpoint on disk is whole
    assert epoch == 0  # Lightning's 0-based index of the last completed epoch
    assert not (killed / "metrics.json").exists()

    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    capsys.readouterr()
    assert json.loads((killed / "metrics.json").read_text())["epochs"] == 2
    weights, epoch = _last_weights(killed)
    ref_weights, ref_epoch = _last_weights(reference)
    assert epoch == ref_epoch == 1
    for key in ref_weights:  # resuming continues exactly: same weights as the run that was never killed
        torch.testing.assert_close(weights[key], ref_weights[key], rtol=0, atol=1e-6)
    rows = list(csv.DictReader((killed / "logs" / "csv" / "metrics.csv").open()))
    assert [r["epoch"] for r in rows if r["val/top1"]] == ["0", "1"]  # the curves keep the epoch before the kill


def test_torchrun_two_processes_match_single_process(tmp_path, data_root):
    env = _env(data_root)
    single = tmp_path / "single"
    single.mkdir()
    subprocess.run([sys.executable, str(TESTS / "ddp_worker.py"), str(single), str(tmp_path / "run1"), data_root],
                   env=env, check=True, capture_output=True, timeout=300)
    double = tmp_path / "double"
    double.mkdir()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(TESTS / "ddp_worker.py"), str(double), str(tmp_path / "run2"), data_root],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = torch.load(double / "rank0.pt", weights_only=True)
    rank1 = torch.load(double / "rank1.pt", weights_only=True)
    alone = torch.load(single / "rank0.pt", weights_only=True)
    initial_gap = 0.0
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key  # DDP keeps the ranks identical
        torch.testing.assert_close(rank0[key], alone[key], rtol=0, atol=2e-5)  # same global batches, same result
        initial_gap = max(initial_gap, (rank0[key] - alone[key]).abs().max().item())
    assert json.loads((tmp_path / "run2" / "metrics.json").read_text())["world_size"] == 2


def test_demo_summary_on_a_small_subset(tmp_path, data_root, capsys):
    from squeezenet.demo import print_demo, run_demo

    # CIFAR-10 with a test folder of 50 images a class (links): the demo evaluates the whole folder, twice per run
    root = tmp_path / "data"
    (root / "cifar10" / "test").mkdir(parents=True)
    (root / "cifar10" / "train").symlink_to(Path(data_root) / "cifar10" / "train")
    for folder in sorted((Path(data_root) / "cifar10" / "test").iterdir()):
        (root / "cifar10" / "test" / folder.name).mkdir()
        for image in sorted(folder.iterdir())[:50]:
            (root / "cifar10" / "test" / folder.name / image.name).symlink_to(image)
    data_root = str(root)
    small = {"time_budget_s": None, "data.limit_train": 512, "data.limit_val": 128}
    result = run_demo(tmp_path / "demo", data_root=data_root, progress=False, overrides={"epochs": 1, **small},
                      compress_overrides=small, prune_epochs=1)
    assert result.test_images == 500  # the exported weights are evaluated on the whole test folder
    assert result.params == 730_570 and result.fp32_bytes >= 4 * result.params
    assert 0 <= result.top1 <= result.top5 <= 1
    trained, compressed = result.rows
    assert compressed.file.suffix == ".sqz" and compressed.file_bytes * 25 < result.fp32_bytes
    assert 0 <= compressed.top1 <= compressed.top5 <= 1
    low, high = compressed.top1_interval  # paired with the trained model on the same 500 images
    assert 0 <= compressed.agreement <= 1 and low <= compressed.top1 - trained.top1 <= high
    print_demo(result)
    out = capsys.readouterr().out
    assert "squeezenet1_1_cifar" in out and "730,570" in out and "test top-1" in out and "model.sqz" in out
    assert "agreement" in out and f"{compressed.agreement:.4f}" in out

    # resuming a finished demo keeps its training and compression: the same files, nothing trained again
    sqz_bytes = compressed.file.read_bytes()
    best_mtime = (tmp_path / "demo" / "best.safetensors").stat().st_mtime_ns
    again = run_demo(tmp_path / "demo", data_root=data_root, progress=False, resume=True, compress_overrides=small,
                     prune_epochs=1)
    assert (tmp_path / "demo" / "best.safetensors").stat().st_mtime_ns == best_mtime
    assert again.rows[1].file.read_bytes() == sqz_bytes
    assert [(r.top1, r.top5) for r in again.rows] == [(r.top1, r.top5) for r in result.rows]
