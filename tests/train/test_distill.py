"""Distillation: fine-tuning on a teacher's outputs, with or without labels, for any preprocessing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lightning")

from conftest import image_folder  # noqa: E402
from squeezenet.compress import PostTraining, Reconstruct, compress_model  # noqa: E402
from squeezenet.compress.finetune import finetune, finetune_recipe  # noqa: E402
from squeezenet.compress.quantize import quantize  # noqa: E402
from squeezenet.data.training import eval_transform  # noqa: E402
from squeezenet.errors import SqueezeNetError  # noqa: E402
from squeezenet.inference.preloaded import unlabelled_images  # noqa: E402
from squeezenet.models import create_model, prunable_layers  # noqa: E402
from squeezenet.models.preprocessing import CAFFE  # noqa: E402
from squeezenet.train.module import ClassifierModule  # noqa: E402


def _caffe_model(num_classes: int = 10):
    torch.manual_seed(0)
    model = create_model("squeezenet1_1", num_classes=num_classes)
    model.meta = model.meta.replace(preprocessing=CAFFE)
    return model.eval()


def _kl(student, teacher, x) -> float:
    with torch.no_grad():
        s, t = student(x), teacher(x)
    return float(F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="batchmean"))


def test_distillation_loss_mixes_kl_and_cross_entropy_per_image() -> None:
    torch.manual_seed(0)
    model, teacher = create_model("squeezenet1_1_cifar", num_classes=10), create_model("squeezenet1_1_cifar", num_classes=10)
    recipe = finetune_recipe(model, epochs=1, lr=0.01, distill=0.3, overrides={"distill.temperature": 2.0,
                                                                                "label_smoothing": 0.0})
    module = ClassifierModule(model, recipe, 10, teacher=teacher)
    x, y = torch.randn(6, 3, 32, 32), torch.tensor([3, -1, 0, -1, 9, 2])
    logits = torch.randn(6, 10) * 3
    with torch.no_grad():
        t = teacher.eval()(x)
    # reference: Hinton et al.'s T^2-scaled KL per image (torch's kl_div), cross-entropy where there is a label
    kl = F.kl_div(F.log_softmax(logits / 2, 1), F.log_softmax(t / 2, 1), log_target=True, reduction="none").sum(1) * 4
    ce = F.cross_entropy(logits, y.clamp(min=0), reduction="none")
    expected = torch.where(y >= 0, 0.3 * kl + 0.7 * ce, kl).mean()
    assert torch.allclose(module.loss(x, logits, y), expected, rtol=1e-5)
    assert module.state_dict().keys() == {f"model.{k}" for k in model.state_dict()}  # no teacher in checkpoints

    plain = ClassifierModule(model, recipe, 10)  # no teacher: unlabelled images cannot be learnt from
    with pytest.raises(SqueezeNetError, match="teacher"):
        plain.loss(x, logits, y)


def test_training_input_pipeline_matches_the_caffe_preset(tmp_path) -> None:
    """The fine-tuning recipe of a Caffe model feeds it what its preprocessing gives (BGR, 0..255, warp, mean)."""
    model = _caffe_model()
    recipe = finetune_recipe(model, epochs=1, lr=1e-3, unlabelled=True)
    module = ClassifierModule(model, recipe, 10, channels_last=False)
    image = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8)
    d = recipe.data
    batch = eval_transform(d.resize, d.image_size, d.resize_mode)(image)[None]
    x, _ = module.on_after_batch_transfer((batch, torch.tensor([-1]), torch.tensor([0]), []), 0)
    reference = CAFFE.transforms()(image)[None]
    assert x.shape == reference.shape == (1, 3, 227, 227)
    assert torch.allclose(x, reference, atol=1e-3)


def test_teacher_only_finetuning_works_on_a_caffe_preset_model(tmp_path) -> None:
    """No labels, Caffe preprocessing: 2-bit sharing moves the outputs far from the uncompressed model's;
    three short epochs on its outputs for 16 unlabelled images bring them back, with the sharing kept."""
    folder = image_folder(tmp_path / "calib", 16, size=(64, 80))
    teacher, student = _caffe_model(), _caffe_model()
    quantize(student, dict.fromkeys(prunable_layers(student), 2), init="linear")
    x = unlabelled_images(teacher.meta, folder)
    before = _kl(student, teacher, x)
    recipe = finetune_recipe(student, epochs=3, lr=1e-3, optimizer="adamw", weight_decay=0.0, unlabelled=True,
                             overrides={"batch_size": 8})
    metrics = finetune(student, str(folder), tmp_path / "run", recipe, teacher=teacher, progress_bar=False)
    after = _kl(student, teacher, x)
    assert before > 0.1 and after < 0.25 * before, (before, after)
    assert metrics["train_images"] == 16 and 0 <= metrics["top1"] <= 1  # top1 is the agreement with the teacher
    for layer in prunable_layers(student).values():
        assert torch.unique(layer.weight.detach()).numel() <= 4


def test_compress_distils_on_calibration_images_and_keeps_the_structure(tmp_path) -> None:
    folder = image_folder(tmp_path / "calib", 8)
    torch.manual_seed(0)
    model = create_model("squeezenet1_1_cifar", num_classes=10).eval()
    method = Reconstruct(calibration=folder, density=0.5, bits=3, centroid_epochs=1, centroid_lr=1e-3)
    compressed, log = compress_model(model, method, work_dir=tmp_path / "work")
    assert [p["phase"] for p in log.phases] == ["distillation"]
    for path, layer in prunable_layers(compressed).items():
        w = layer.weight.detach()
        assert abs(float((w != 0).float().mean()) - 0.5) < 0.02, path  # distillation kept every mask
        assert torch.unique(w[w != 0]).numel() <= 8, path  # and the 3-bit sharing
    with pytest.raises(TypeError, match="centroid_epochs"):  # no data, nothing to distil on: not writable
        PostTraining(centroid_epochs=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="distill"):  # distillation mixed into label loss needs labels
        Reconstruct(calibration=folder, distill=0.5)  # type: ignore[call-arg]


def test_cli_distillation_options_fail_in_one_line(tmp_path, capsys) -> None:
    import subprocess
    import sys

    from squeezenet.cli import main
    from squeezenet.weights import save_weights

    src = save_weights(create_model("squeezenet1_1_cifar", num_classes=10), tmp_path / "m.safetensors")
    base = [sys.executable, "-m", "squeezenet", "compress", "-w", str(src), "-o", str(tmp_path / "c.sqz")]
    for extra, message in ((["--distill", "0.5"], "--distill: not for compression without data (PostTraining)"),
                           (["--data", "cifar10", "--distill", "1.5"], "between 0 and 1"),
                           (["--centroid-epochs", "1"], "--centroid-epochs: not for compression without data"),
                           (["--calibration", str(tmp_path), "--lr", "0.1"], "--lr: not for compression with "
                                                                            "--calibration (Reconstruct)")):
        if extra[0] == "--distill":  # one in a process of its own: exit status and stderr as a shell sees them
            result = subprocess.run(base + extra, capture_output=True, text=True)
            code, err = result.returncode, result.stderr
        else:  # the rest in-process (the same error policy, without an interpreter start each)
            code, err = main(base[3:] + extra), capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # (argparse prints its usage above a bad value)
        assert code != 0 and message in last and last.startswith("squeezenet"), err
        assert "Traceback" not in err
    assert not (tmp_path / "c.sqz").exists()
