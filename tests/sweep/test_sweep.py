"""Design-space sweeps (issue: sweeps): space files, bad input, workers sharing a study, kills, search + Pareto."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("optuna")
from conftest import image_folder, require_shared  # noqa: E402
from squeezenet.cli import main  # noqa: E402
from squeezenet.errors import SqueezeNetError  # noqa: E402
from squeezenet.sweep import parse_space, point_key  # noqa: E402

TESTS = Path(__file__).parents[1]
TINY = {"small_stem": True, "stem_pool": True, "batch_norm": True, "base_e": 16, "incr_e": 16, "epochs": 1,
        "batch_size": 64, "data.limit_train": 192, "data.limit_val": 64}


@pytest.mark.parametrize("space, words", [
    ({"sr": [0.25], "bogus": [1, 2]}, "unknown metaparameter 'bogus'"),
    ({"sr": []}, "sr has an empty list of values"),
    ({}, "names no metaparameter"),
    ({"sr": {"low": 0.5, "high": 0.1}}, "needs low < high"),
    ({"sr": [0.1], "fixed": {"sr": 0.2}}, "both fixed and swept"),
    ({"num_classes": [10, 100]}, "cannot be swept"),
    ({"sr": [0.1, 0.1]}, "lists a value twice"),
])
def test_bad_space_files_are_one_clear_error(space, words) -> None:
    with pytest.raises(SqueezeNetError, match=words):
        parse_space(space, "space.yaml")


def test_spaces_name_model_options_and_recipe_keys() -> None:
    space = parse_space({"fixed": {"small_stem": True, "epochs": 2}, "sr": [0.125, 0.5], "bypass": ["none", "simple"],
                         "optimizer.lr": [0.1, 0.2]}, "space.yaml")
    grid = space.grid()
    assert len(grid) == 8 and len({point_key(p) for p in grid}) == 8
    model, recipe = space.split(grid[-1])
    assert model == {"small_stem": True, "sr": 0.5, "bypass": "simple"}
    assert recipe == {"epochs": 2, "optimizer.lr": 0.2}
    with pytest.raises(SqueezeNetError, match="is a range"):
        parse_space({"sr": {"low": 0.1, "high": 0.9}}, "s").grid()


def test_the_reported_interval_is_wilsons() -> None:
    from squeezenet.sweep.report import interval_half_width

    # Newcombe (1998), Stat. Med. 17:857, Table I: 81 of 263 -> Wilson's interval 0.2553 to 0.3662
    assert interval_half_width(81 / 263, 263) == pytest.approx((0.3662 - 0.2553) / 2, abs=1e-4)
    assert interval_half_width(0.5, 100) == pytest.approx(0.0962, abs=1e-4)
    assert interval_half_width(0.7, 5000) < interval_half_width(0.7, 500) < interval_half_width(0.7, 50)
    assert interval_half_width(None, 100) is None and interval_half_width(0.5, None) is None


def _space(tmp_path: Path, **params) -> Path:
    import yaml

    path = tmp_path / f"space{len(list(tmp_path.glob('space*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({"model": "squeezenet_design", "recipe": "cifar10", "fixed": TINY, **params}))
    return path


@pytest.fixture(scope="module")
def env() -> dict:
    data_root = str(require_shared("cifar10").parent)
    return {**os.environ, "SQUEEZENET_DATA": data_root, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS.parent / "src")}


def test_bad_sweeps_are_one_line_and_write_nothing(tmp_path, env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SQUEEZENET_DATA", env["SQUEEZENET_DATA"])
    study = tmp_path / "study"
    cases = [
        (["--space", str(_space(tmp_path, sr=[0.125], colour=["red"]))], "unknown metaparameter 'colour'"),
        (["--space", str(_space(tmp_path, sr=[0.125, 0.25])), "--max-params", "1k"],
         "every one of the 2 points exceeds --max-params 1,000"),
        (["--space", str(_space(tmp_path, sr=[0.125])), "--storage", f"sqlite:///{tmp_path}/no/such/folder/s.db"],
         "cannot open the study database"),
        (["--space", str(_space(tmp_path, sr={"low": 0.1, "high": 0.5}))], "is a range"),
    ]
    if importlib.util.find_spec("pymysql") is None:  # a database whose Python driver is missing
        cases.append((["--space", str(_space(tmp_path, sr=[0.125])), "--storage", "mysql+pymysql://u:p@127.0.0.1:9/x"],
                      "the database's Python driver is not installed"))
    for args, words in cases:
        assert main(["sweep", "--data", "cifar10", "-o", str(study), *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
        assert not study.exists()


def _study_trials(study: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(study / "study.journal")))
    return optuna.load_study(study_name="squeezenet-sweep", storage=storage).get_trials(deepcopy=False)


def _sweep_cmd(space: Path, study: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "squeezenet", "sweep", "--data", "cifar10", "--space", str(space), "-o", str(study),
            "--no-progress", *extra]


@pytest.mark.slow
def test_two_workers_started_together_split_the_grid(tmp_path, env) -> None:
    space, study = _space(tmp_path, sr=[0.125, 0.5], pct3x3=[0.25, 0.75]), tmp_path / "study"
    procs = [subprocess.Popen(_sweep_cmd(space, study), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    complete = [t for t in _study_trials(study) if t.state.name == "COMPLETE"]
    points = sorted(t.user_attrs["point"] for t in complete)
    grid = sorted(point_key(p) for p in parse_space(json.loads((study / "sweep.json").read_text())["space"], "s").grid())
    assert points == grid  # the whole grid, every point once
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both workers trained some
    assert all((study / "trials" / key / "metrics.json").is_file() for key in grid)


@pytest.mark.slow
def test_sigkill_mid_trial_then_the_same_command_finishes_without_repeats(tmp_path, env) -> None:
    space, study = _space(tmp_path, sr=[0.125, 0.25, 0.5]), tmp_path / "study"
    space.write_text(space.read_text().replace("epochs: 1", "epochs: 3"))
    proc = subprocess.Popen(_sweep_cmd(space, study), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    line = ""
    while "trial 1:" not in line:  # the first trial has finished, the second begun
        line = proc.stderr.readline()  # type: ignore[union-attr]
        assert line or proc.poll() is None, "the sweep ended before it could be killed"
    while "epoch 1/3" not in line:  # the second trial is mid-run, with a checkpoint
        line = proc.stderr.readline()  # type: ignore[union-attr]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = next(t for t in _study_trials(study) if t.state.name == "COMPLETE")
    first_metrics = (study / first.user_attrs["run_dir"] / "metrics.json").stat().st_mtime_ns

    again = subprocess.run(_sweep_cmd(space, study), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "lost its worker: marked failed, its point will be retried" in again.stderr
    trials = _study_trials(study)
    complete = sorted(t.user_attrs["point"] for t in trials if t.state.name == "COMPLETE")
    assert len(complete) == 3 and len(set(complete)) == 3  # every point, none twice
    assert (study / first.user_attrs["run_dir"] / "metrics.json").stat().st_mtime_ns == first_metrics  # kept
    failed = [t for t in trials if t.state.name == "FAIL" and "failure" in t.user_attrs]
    assert len(failed) == 1
    retried = json.loads((study / failed[0].user_attrs["run_dir"] / "metrics.json").read_text())
    assert retried["epochs"] == 3  # the retry resumed the killed attempt's run folder and finished it


@pytest.mark.slow
def test_search_with_a_size_constraint_gives_a_front_whose_best_loads_anywhere(tmp_path, env, capsys) -> None:
    space, study = _space(tmp_path, sr={"low": 0.1, "high": 0.9}, pct3x3=[0.25, 0.75]), tmp_path / "study"
    done = subprocess.run(_sweep_cmd(space, study, "--mode", "search", "--trials", "4", "--max-params", "40k"),
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    capsys.readouterr()
    assert main(["sweep", "--report", str(study), "--json"]) == 0  # in-process: reading a study trains nothing
    rows = json.loads(capsys.readouterr().out)
    trained = [r for r in rows if r["state"] == "complete"]
    assert len(trained) == 4 and all(r["params"] <= 40_000 for r in trained)
    assert all(r["epochs"] == 1 for r in trained)  # how long each trained (the space's fixed epochs: 1)
    assert all(0.02 < r["top1_ci"] < 0.13 for r in trained)  # 64 validation images: a wide interval
    front = [r for r in trained if r["pareto"]]
    assert front and all(not any(o["top1"] >= r["top1"] and o["params"] < r["params"] for o in trained) for r in front)
    for name in ("report.csv", "report.json", "plot_sr.png", "plot_pct3x3.png", "plot_pareto.png"):
        assert (study / name).is_file(), name
    best = max(front, key=lambda r: r["top1"])
    weights = study / best["run_dir"] / "best.safetensors"
    images = image_folder(tmp_path / "images", 2, size=(32, 32))
    for argv in (["predict", "-w", str(weights), str(images), "--json"],
                 ["compress", "-w", str(weights), "-o", str(tmp_path / "best.sqz")]):
        assert main(argv) == 0, argv
    capsys.readouterr()
    cifar = Path(env["SQUEEZENET_DATA"]) / "cifar10" / "test"
    labelled = tmp_path / "labelled"
    for cls in sorted(p.name for p in cifar.iterdir())[:2]:
        (labelled / cls).mkdir(parents=True)
        for f in sorted((cifar / cls).iterdir())[:2]:
            (labelled / cls / f.name).write_bytes(f.read_bytes())
    assert main(["eval", "-w", str(weights), "-d", str(labelled), "--json"]) == 0


def test_the_shipped_space_files_parse() -> None:
    from squeezenet.sweep import load_space

    files = sorted((TESTS.parent / "sweeps").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        space = load_space(path)
        assert space.params and (space.is_grid or "search" in path.name)


@pytest.mark.slow
def test_a_worker_under_torchrun_trains_each_trial_on_all_ranks(tmp_path, env) -> None:
    space, study = _space(tmp_path, sr=[0.125, 0.5]), tmp_path / "study"
    cmd = _sweep_cmd(space, study, "--prune")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *cmd[1:]], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    complete = [t for t in _study_trials(study) if t.state.name == "COMPLETE"]
    assert sorted(t.user_attrs["point"] for t in complete) == sorted(point_key({"sr": v}) for v in (0.125, 0.5))
    assert len({t.user_attrs["worker"] for t in complete}) == 1  # rank 0 is the one worker of the study
    for t in complete:  # each trial was one DDP run over both processes
        assert json.loads((study / t.user_attrs["run_dir"] / "metrics.json").read_text())["world_size"] == 2
    assert done.stderr.count("trial(s) finished by this worker") == 1


@pytest.mark.slow
def test_one_database_holds_several_studies_and_other_machines_join_by_the_same_command(tmp_path, env, monkeypatch) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    first, second = _space(tmp_path, sr=[0.125]), _space(tmp_path, sr=[0.25])
    for space, folder in ((first, "a"), (second, "b")):
        done = subprocess.run(_sweep_cmd(space, tmp_path / folder, "--storage", url), env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    monkeypatch.setenv("SQUEEZENET_DATA", env["SQUEEZENET_DATA"])  # the joining machine in-process: nothing to train
    assert main(_sweep_cmd(first, tmp_path / "a-on-another-machine", "--storage", url)[3:]) == 0
    summaries = optuna.get_all_study_summaries(storage=url)
    assert len(summaries) == 2  # two spaces, two studies; the third command joined the first study
    points = {s.study_name: sorted(t.user_attrs["point"] for t in optuna.load_study(study_name=s.study_name, storage=url)
                                   .get_trials(states=(optuna.trial.TrialState.COMPLETE,))) for s in summaries}
    assert sorted(points.values()) == [[point_key({"sr": 0.125})], [point_key({"sr": 0.25})]]  # each point once
    assert not (tmp_path / "a-on-another-machine" / "trials").exists()  # nothing was left for it to train
