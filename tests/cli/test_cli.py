"""The command line: in-process for speed, plus one real console-script run."""

import json
import shutil
import subprocess
import sys

import pytest

from squeezenet.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_subcommands_with_descriptions(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "models" in out and "info" in out and "Per-layer report" in out and "compress" in out


def test_version(capsys):
    from squeezenet import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"squeezenet {__version__}"


def test_info_json_reports_paper_figures(capsys):
    code, out, _ = run(capsys, "info", "squeezenet1_0", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["model"] == "squeezenet1_0" and d["input_size"] == 224 and d["params"] == 1_248_424
    assert abs(d["macs"] / 1e9 - 0.82) < 0.01 and d["size_bytes"] == 4_993_696
    fire = {row["name"]: row["params"] for row in d["layers"]}
    assert fire["fire2"] == 11_920 and fire["fire9"] == 197_184 and fire["conv10"] == 513_000


def test_info_table_and_options(capsys):
    code, out, _ = run(capsys, "info", "squeezenet_design", "--set", "sr=0.25", "--set", "batch-norm=true")
    assert code == 0 and "fire9" in out and "total" in out
    code, out, _ = run(capsys, "info", "squeezenet_design", "--set", "sr=0.25", "--json")
    assert {r["name"]: r.get("squeeze") for r in json.loads(out)["layers"]}["fire2"] == 32


def test_info_on_weights_and_onnx_files(tmp_path, capsys):
    import torch

    from squeezenet import create_model
    from squeezenet.deploy import export_onnx
    from squeezenet.weights import Preprocessing, save_weights

    model = create_model("squeezenet1_1_cifar", num_classes=10)
    model.meta = model.meta.replace(preprocessing=Preprocessing("cifar", resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3))
    with torch.no_grad():
        model.features[0].weight[:32] = 0  # prune a known number of weights
    pruned = model.features[0].weight[:32].numel()
    total = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight") and p.dim() > 1)
    save_weights(model, tmp_path / "m.safetensors")
    code, out, _ = run(capsys, "info", str(tmp_path / "m.safetensors"), "--json")
    d = json.loads(out)
    assert code == 0 and d["input_size"] == 32 and d["params"] == sum(p.numel() for p in model.parameters())
    assert d["file"]["weights"] == total and d["file"]["nonzero_weights"] == total - pruned
    assert d["file"]["classes"] == 10
    code, out, _ = run(capsys, "info", str(tmp_path / "m.safetensors"))
    assert f"non-zero weights {total - pruned:,} of {total:,}" in out and "fire9" in out

    export_onnx(model.eval(), tmp_path / "m.onnx", check_images=torch.rand(2, 3, 32, 32))
    code, out, _ = run(capsys, "info", str(tmp_path / "m.onnx"), "--json")
    d2 = json.loads(out)
    assert d2["file"]["precision"] == "fp32" and d2["file"]["classes"] == 10
    assert d2["layers"] == d["layers"] and d2["macs"] == d["macs"]
    code, _, err = run(capsys, "info", str(tmp_path / "m.onnx"), "--set", "sr=0.5")
    assert code == 1 and "carries its own architecture" in err


def test_models_lists_registry(capsys):
    code, out, _ = run(capsys, "models", "--json")
    names = {r["name"]: r for r in json.loads(out)}
    assert names["squeezenet1_1"]["params"] == 1_235_496 and "alexnet" in names
    code, out, _ = run(capsys, "models", "squeezenet1_*", "--options")
    assert "squeezenet1_1_cifar" in out and "alexnet" not in out and "caffe_compat" in out


@pytest.mark.parametrize(
    "argv, words",
    [(["info", "squeezenet9"], "unknown model"),
     (["info", "squeezenet1_0", "--input-size", "16"], "too small"),
     (["info", "squeezenet_design", "--set", "sr=0"], "SR"),
     (["info", "squeezenet_design", "--set", "sr=-1"], "SR"),
     (["info", "alexnet", "--set", "small_stem=true"], "no option"),
     (["models", "resnet*"], "no model matches")],
)
def test_user_errors_are_one_line_without_traceback(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("squeezenet: error:") and words in err
    assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("squeezenet") is None and not (sys.prefix and True), reason="console script")
def test_console_script_exit_codes():
    exe = shutil.which("squeezenet", path=str(__import__("pathlib").Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the squeezenet console script is not installed in this environment")
    ok = subprocess.run([exe, "info", "squeezenet1_1", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["params"] == 1_235_496
    bad = subprocess.run([exe, "info", "squeezenet1_0", "--input-size", "8"], capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1
    usage = subprocess.run([exe, "info"], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr


# --- the error policy: user errors are one line, bugs keep their traceback -----------------------------------

def test_a_bug_inside_a_command_shows_its_traceback(monkeypatch):
    import squeezenet.models

    def broken(pattern="*"):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(squeezenet.models, "list_models", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["models"])


def test_a_bug_in_a_subprocess_prints_a_traceback_and_a_bad_input_one_line():
    code = ("import sys, squeezenet.models as m\n"
            "m.list_models = lambda pattern='*': {}['missing']\n"
            "from squeezenet.cli import main\nsys.exit(main(sys.argv[1:]))")
    bug = subprocess.run([sys.executable, "-c", code, "models"], capture_output=True, text=True)
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "KeyError: 'missing'" in bug.stderr
    bad = subprocess.run([sys.executable, "-c", code, "info", "squeezenet9"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "unknown model" in bad.stderr


def test_library_parameter_names_become_this_verbs_flags():
    from squeezenet.cli.main import build_parser, flag_spelling

    parser, _ = build_parser()
    compress = parser._subparsers._group_actions[0].choices["compress"]  # type: ignore[union-attr]
    message = ("x holds an unfinished compression; pass resume=True to continue it, or choose another work_dir=; "
               "needs training data (data=); use limit=3 or fewer")
    assert flag_spelling(message, compress) == ("x holds an unfinished compression; pass --resume to continue it, or "
                                                "choose another --work-dir; needs training data (--data); use limit=3 "
                                                "or fewer")  # compress has no --limit: left as the library says it
    sensitivity = parser._subparsers._group_actions[0].choices["sensitivity"]  # type: ignore[union-attr]
    assert flag_spelling("use limit=3 or fewer", sensitivity) == "use --limit 3 or fewer"
    assert flag_spelling("data_root=/x and mydata=1", compress) == "--data-root /x and mydata=1"


def test_a_verb_whose_extra_is_missing_names_it_even_for_help(monkeypatch, capsys):
    import squeezenet.common.extras as extras

    real = extras.find_spec
    monkeypatch.setattr(extras, "find_spec", lambda name: None if name == "lightning" else real(name))
    for argv in (["train", "--help"], ["demo", "-o", "x"], ["recipes"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "[train] extra" in err and "pip install 'squeezenet-toolkit[train]'" in err
    assert main(["models", "squeezenet1_1"]) == 0  # the core verbs do not care
    from squeezenet.errors import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"squeezenet.train needs the \[train\] extra"):
        import squeezenet.train as train_package

        train_package.__dict__.pop("train", None)
        train_package.train  # noqa: B018  (the lazy attribute checks the extra)


def test_warnings_are_logged_as_one_line_each(tmp_path, capsys):
    """Library warnings reach the terminal through the CLI's logging handler, unwrapped however long."""
    import logging

    from squeezenet.cli.main import setup_logging

    setup_logging(quiet=False)
    logging.getLogger("squeezenet.test").warning("w" * 300)
    logging.getLogger("squeezenet.test").info("an info line")
    err = capsys.readouterr().err
    assert err.splitlines() == ["squeezenet: warning: " + "w" * 300, "an info line"]
