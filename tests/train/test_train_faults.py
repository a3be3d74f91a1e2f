"""Training runs against kills, signals, full disks and a second trainer (issue: reliability). Slow: real runs
on a small CIFAR-10 subset; the mounts need root (skipped with the reason elsewhere)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import require_shared
from squeezenet.cli import main

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent  # the workers are beside these tests
# 256 images an epoch (4 steps): the subjects are faults, signals and resumes, not accuracy (1024 made this file 220 s
# of CI)
SMALL = ["--data", "cifar10", "--set", "data.limit_train=256", "--set", "data.limit_val=128", "--batch-size", "64",
         "--time-budget", "0", "--no-progress"]


@pytest.fixture(scope="module")
def env() -> dict:
    data_root = str(require_shared("cifar10").parent)
    return {**os.environ, "SQUEEZENET_DATA": data_root, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parents[1] / "src")}


def _squeezenet(args: list[str], env: dict, **faults: int) -> subprocess.CompletedProcess:
    env = {**env, **{k: str(v) for k, v in faults.items()}}
    return subprocess.run([sys.executable, str(TESTS / "fault_worker.py"), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("squeezenet: error", "squeezenet: stopped", "Traceback"))]


def _epoch(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["epoch"])


@pytest.fixture()
def tmpfs(tmp_path):
    """A fresh tmpfs mounted under tmp_path (64 MB): another filesystem, and one that can be filled."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'})")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_kill_during_a_checkpoint_write_across_filesystems_resumes(tmp_path, tmpfs, env):
    run = tmp_path / "run"  # on the test's disk, $TMPDIR on the tmpfs: Lightning's own writer copied between them
    env = {**env, "TMPDIR": str(tmpfs)}
    killed = _squeezenet(["train", *SMALL, "--epochs", "3", "-o", str(run)], env, KILL_AT_SAVE=2, FAULT_MATCH="last.ckpt")
    assert killed.returncode == -signal.SIGKILL
    assert _epoch(run / "checkpoints" / "last.ckpt") == 0  # the previous checkpoint, whole
    resumed = _squeezenet(["train", "--resume", str(run), "--no-progress"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _epoch(run / "checkpoints" / "last.ckpt") == 2
    assert not list(run.rglob("*.tmp"))  # the torn temporary file was replaced by later writes or removed


def test_full_disk_keeps_the_previous_checkpoint_and_says_so(tmpfs, env):
    run = tmpfs / "run"
    full = _squeezenet(["train", *SMALL, "--epochs", "3", "-o", str(run)], env, FILL_AT_SAVE=2, FAULT_MATCH="last.ckpt")
    assert full.returncode == 1
    errors = _errors(full.stderr)
    assert len(errors) == 1 and "could not write the checkpoint (no space left on the device); the previous " \
                                "checkpoint is intact" in errors[0], full.stderr[-2000:]
    assert _epoch(run / "checkpoints" / "last.ckpt") == 0
    assert not list(run.rglob("*.tmp"))
    (run / "checkpoints" / "filler").unlink()  # space again: the run continues where it was
    resumed = _squeezenet(["train", "--resume", str(run), "--no-progress"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]


def test_kill_before_the_first_checkpoint_restarts_with_resume(tmp_path, env, capsys, monkeypatch):
    run = tmp_path / "run"
    killed = _squeezenet(["train", *SMALL, "--epochs", "1", "-o", str(run)], env, KILL_AT_SAVE=1)
    assert killed.returncode == -signal.SIGKILL
    assert (run / "run.json").is_file() and not (run / "checkpoints" / "last.ckpt").exists()
    monkeypatch.setenv("SQUEEZENET_DATA", env["SQUEEZENET_DATA"])
    assert main(["train", *SMALL, "--epochs", "1", "-o", str(run)]) == 1  # in-process: refused before any work
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0  # resumes in-process too (one process less)
    assert "starting it over" in capsys.readouterr().err
    assert (run / "metrics.json").is_file() and _epoch(run / "checkpoints" / "last.ckpt") == 0


def test_a_second_trainer_on_the_same_folder_is_refused_at_once(tmp_path, env, capsys, monkeypatch):
    run = tmp_path / "run"
    # (more epochs than it can train while the checks run: it is killed below)
    first = subprocess.Popen([sys.executable, "-m", "squeezenet", "train", *SMALL, "--epochs", "50", "-o", str(run)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = run / ".train.lock"
        deadline = time.time() + 60
        while not (lock.is_file() and lock.read_text().startswith("pid")) and time.time() < deadline:
            time.sleep(0.2)
        start = time.time()  # the second trainer and the resumer in-process: they are refused before any work
        monkeypatch.setenv("SQUEEZENET_DATA", env["SQUEEZENET_DATA"])
        assert main(["train", *SMALL, "--epochs", "1", "-o", str(run)]) == 1
        assert capsys.readouterr().err.strip().splitlines() == [
            f"squeezenet: error: {run} is in use by another training run (pid {first.pid} on {os.uname().nodename}); "
            "wait for it to finish or choose another folder"]
        assert time.time() - start < 30  # before any data is loaded
        assert main(["train", "--resume", str(run)]) == 1
        assert "in use by another training run" in capsys.readouterr().err
    finally:
        first.kill()
        first.wait()
    # the lock dies with its owner: the folder can be resumed now (or restarted, had it no checkpoint)
    after = _squeezenet(["train", "--resume", str(run), "--epochs", "1", "--no-progress"], env)
    assert "in use" not in after.stderr


def test_sigterm_saves_exits_non_zero_and_resume_continues_exactly(tmp_path, env, capsys, monkeypatch):
    args = ["train", *SMALL, "--epochs", "2", "--set", "data.limit_train=256"]  # 4 steps an epoch
    reference = tmp_path / "reference"  # the run never stopped, and the resume, in-process: one process less each
    monkeypatch.setenv("SQUEEZENET_DATA", env["SQUEEZENET_DATA"])
    assert main([*args, "-o", str(reference)]) == 0

    run = tmp_path / "run"  # SIGTERM as step 7 begins: epoch 2, batch 3, on any CPU
    stopped_run = subprocess.run([sys.executable, str(TESTS / "fault_worker.py"), *args, "-o", str(run)],
                                 env={**env, "SIGNAL_AT_STEP": "7", "SIGNAL": "TERM"}, capture_output=True, text=True,
                                 timeout=300)
    stderr = stopped_run.stderr
    assert stopped_run.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    stopped = _errors(stderr)
    assert len(stopped) == 1 and stopped[0].startswith("squeezenet: stopped: SIGTERM at epoch 2, batch 3"), stderr
    assert f"`squeezenet train --resume {run}` continues" in stopped[0]
    assert not (run / "metrics.json").exists()

    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    ours = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ref = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ours["global_step"] == ref["global_step"]
    for key, value in ref["state_dict"].items():  # stopped mid-epoch, resumed with the next batch: same weights
        torch.testing.assert_close(ours["state_dict"][key], value, rtol=0, atol=1e-6)


def test_a_time_budget_that_ends_a_run_says_so_and_a_spent_one_is_not_resumed(tmp_path, env, capsys, monkeypatch):
    monkeypatch.setenv("SQUEEZENET_DATA", env["SQUEEZENET_DATA"])
    run = tmp_path / "run"
    args = [a for a in SMALL if a not in ("--time-budget", "0")]
    assert main(["train", *args, "--set", "data.limit_train=2048", "--epochs", "2", "--time-budget", "2",
                 "-o", str(run)]) == 0
    assert "time budget of 2 s reached in epoch 1 of 2, after " in capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())  # (with --json, the JSON says it: stopped_by)
    assert metrics["stopped_by"] == "time budget" and metrics["epochs"] < 2
    assert main(["train", "--resume", str(run)]) == 1  # in-process: refused before any work
    assert _errors(capsys.readouterr().err) == [f"squeezenet: error: {run}: its time budget of 2 s is spent "
                                     f"({metrics['train_time_s']:.0f} s trained), nothing is left to train; give it more "
                                     "with --time-budget SECONDS or none with --time-budget 0"]
    assert main(["train", "--resume", str(run), "--time-budget", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2


class _Payload:
    """What a hostile checkpoint carries: unpickling it would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_damaged_last_checkpoint_is_one_line_naming_it_and_the_earlier_one(tmp_path, env, capsys, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setenv("SQUEEZENET_DATA", env["SQUEEZENET_DATA"])
    assert main(["train", *SMALL, "--set", "data.limit_train=256", "--epochs", "1", "-o", str(run)]) == 0
    last = run / "checkpoints" / "last.ckpt"
    best = sorted((run / "checkpoints").glob("epoch*.ckpt"))
    assert last.is_file() and len(best) == 1
    whole = last.read_bytes()
    marker = tmp_path / "payload-ran"
    torch.save({"state_dict": {}, "hook": _Payload(marker)}, tmp_path / "hostile.ckpt")
    for damaged, problem in ((whole[: len(whole) // 2], "not a readable checkpoint"),
                             ((tmp_path / "hostile.ckpt").read_bytes(), "holds Python objects besides tensors")):
        last.write_bytes(damaged)
        assert main(["train", "--resume", str(run)]) == 1  # in-process: refused before anything is trained
        errors = _errors(capsys.readouterr().err)
        assert len(errors) == 1
        assert errors[0].startswith(f"squeezenet: error: {last}: not a readable checkpoint") and problem in errors[0]
        assert f"{best[0].name} is beside it: copy it over last.ckpt" in errors[0]
    assert not marker.exists()
    best[0].replace(last)  # what the message says to do: the run resumes from the best epoch
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
