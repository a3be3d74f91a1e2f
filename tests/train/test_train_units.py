"""Recipes, schedules, initialisation, augmentation and data resolution (fast)."""

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from conftest import require_shared
from squeezenet.data import ImageDataset, TensorLoader, collate_images
from squeezenet.data.augment import pad_crop_flip, sample_hash
from squeezenet.data.training import resolve_data, train_transform
from squeezenet.models import create_model
from squeezenet.train import list_recipes, load_recipe
from squeezenet.train.module import lr_at
from squeezenet.train.weight_init import init_weights


def test_named_recipes_match_their_sources():
    assert {"paper", "torchvision", "cifar10"} <= set(list_recipes())
    paper = load_recipe("paper")
    assert (paper.optimizer.lr, paper.optimizer.momentum, paper.optimizer.weight_decay) == (0.04, 0.9, 2e-4)
    assert (paper.batch_size, paper.data.image_size, paper.init, paper.schedule.name) == (512, 227, "caffe", "linear")
    tv = load_recipe("torchvision")
    assert (tv.epochs, tv.optimizer.lr, tv.optimizer.weight_decay, tv.batch_size) == (100, 0.01, 2e-4, 128)
    assert (tv.schedule.name, tv.schedule.step_epochs, tv.schedule.gamma) == ("step", 30, 0.1)
    cifar = load_recipe("cifar10")
    assert cifar.data.image_size == 32 and cifar.data.augment == "cifar"


def test_overrides_and_bad_recipes(tmp_path):
    r = load_recipe("cifar10", {"optimizer.lr": "0.05", "model_options.batch_norm": "false", "epochs": 3})
    assert r.optimizer.lr == 0.05 and r.model_options["batch_norm"] is False and r.epochs == 3
    with pytest.raises(ValueError, match="unknown field"):
        load_recipe("cifar10", {"optimizer.learning_rate": 1})
    with pytest.raises(ValueError, match="lr must be > 0"):
        load_recipe("cifar10", {"optimizer.lr": 0})
    with pytest.raises(ValueError, match="unknown recipe"):
        load_recipe("fastest")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1, 2\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_recipe(bad)
    custom = tmp_path / "mine.yaml"
    custom.write_text("name: mine\nmodel: squeezenet1_0_cifar\nepochs: 2\ndata: {image_size: 32, resize: 32}\n")
    assert load_recipe(custom).model == "squeezenet1_0_cifar"


def test_schedules():
    onecycle = load_recipe("cifar10", {"schedule.pct_start": 0.25})
    assert lr_at(onecycle, 0.0) == pytest.approx(0.04) and lr_at(onecycle, 0.25) == pytest.approx(1.0)
    assert lr_at(onecycle, 1.0) == pytest.approx(0.0, abs=1e-12) and lr_at(onecycle, 0.6) < lr_at(onecycle, 0.4)
    paper = load_recipe("paper")
    assert lr_at(paper, 0.0) == 1.0 and lr_at(paper, 0.5) == pytest.approx(0.5) and lr_at(paper, 1.0) == 0.0
    tv = load_recipe("torchvision")  # 100 epochs, /10 every 30
    assert [lr_at(tv, e / 100) for e in (0, 29, 30, 60, 95)] == pytest.approx([1, 1, 0.1, 0.01, 0.001])
    warm = load_recipe("paper", {"schedule.warmup_epochs": 6.8})  # 10% of 68 epochs
    assert lr_at(warm, 0.05) == pytest.approx(0.5) and lr_at(warm, 0.1) == pytest.approx(1.0)


def test_caffe_init_is_xavier_with_gaussian_conv10():
    model = create_model("squeezenet1_0")
    init_weights(model, "caffe")
    conv1 = model.features[0].weight
    bound = (3.0 / conv1[0].numel()) ** 0.5
    assert conv1.abs().max() <= bound and conv1.abs().max() > 0.9 * bound
    head = model.get_classifier().weight
    assert abs(head.std().item() - 0.01) < 0.001 and not model.get_classifier().bias.any()
    with pytest.raises(ValueError, match="init scheme"):
        init_weights(model, "glorot")


def test_batched_pad_crop_flip_matches_torchvision_per_image():
    x = torch.randn(16, 3, 32, 32)
    index = torch.arange(100, 116)
    out = pad_crop_flip(x, index, epoch=3, seed=7, padding=4)
    h = sample_hash(7, 3, index)
    for k in range(16):
        dy, dx, flip = int(h[k] % 9), int(h[k] // 9 % 9), bool(h[k] // 81 % 2)
        ref = TF.crop(TF.pad(x[k], [4, 4, 4, 4], padding_mode="reflect"), dy, dx, 32, 32)
        torch.testing.assert_close(out[k], TF.horizontal_flip(ref) if flip else ref)
    # offsets and flips cover their ranges, and depend on the epoch
    assert len({int(v) % 9 for v in sample_hash(0, 0, torch.arange(1000))}) == 9
    assert not torch.equal(sample_hash(0, 0, index), sample_hash(0, 1, index))


def test_batched_augmentation_is_per_sample_not_per_batch():
    x = torch.randn(8, 3, 32, 32)
    index = torch.arange(8)
    perm = torch.randperm(8)
    a = pad_crop_flip(x, index, 0, 0, 4)
    b = pad_crop_flip(x[perm], index[perm], 0, 0, 4)
    torch.testing.assert_close(a[perm], b)  # same image, same crop, whatever its batch position


def test_seeded_per_sample_v2_augmentation_is_reproducible():
    images = torch.randint(0, 255, (4, 3, 40, 40), dtype=torch.uint8)
    ds = ImageDataset(TensorLoader(images), [0, 1, 2, 3], train_transform("imagenet", 32), seed=1)
    first = ds[2][0]
    ds.set_epoch(0)
    assert torch.equal(ds[2][0], first) and ds[2][0].shape == (3, 32, 32)
    ds.set_epoch(1)
    assert not torch.equal(ds[2][0], first)


def test_resolve_cifar10_jpeg_folders():
    root = require_shared("cifar10").parent
    source = resolve_data("cifar10", root)
    assert source.classes[:3] == ["airplane", "automobile", "bird"] and len(source.classes) == 10
    assert len(source.train.labels) == 30_000 and len(source.val.labels) == 5_000 and source.val_name == "test"


def test_resolve_folder_layouts_and_errors(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("ant", "bee"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (40, 30), "red").save(tmp_path / split / cls / "a.jpg")
    (tmp_path / "train" / "bee" / "broken.jpg").write_bytes(b"not a jpeg")
    source = resolve_data(str(tmp_path))
    assert source.classes == ["ant", "bee"] and len(source.train.labels) == 3 and source.val_name == "val"
    from squeezenet.data.training import make_dataset

    ds, skipped = make_dataset(source.train, train=True, size=32, resize=32, augment="cifar", in_memory=True, seed=0)
    assert len(ds) == 2 and len(skipped) == 1 and "broken.jpg" in skipped[0]
    streamed, _ = make_dataset(source.train, train=True, size=32, resize=36, augment="imagenet", in_memory=False, seed=0)
    images, labels, index, skipped = collate_images([streamed[i] for i in range(3)])
    assert len(labels) == 2 and len(skipped) == 1 and "broken.jpg" in skipped[0]  # skipped in the loader, not a crash
    with pytest.raises(ValueError, match="train/ folder and a val/ or test/"):
        resolve_data(str(tmp_path / "train"))


def test_cifar10_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets.utils as u

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(u, "download_url", offline)
    monkeypatch.setattr(u, "download_and_extract_archive", offline)
    import torchvision.datasets.cifar as c

    monkeypatch.setattr(c, "download_and_extract_archive", offline)
    with pytest.raises(OSError, match="CIFAR-10 not found"):
        resolve_data("cifar10", tmp_path)


def test_head_bias_keeps_every_class_unit_alive_at_start():
    from squeezenet.train.weight_init import init_head_bias

    recipe = load_recipe("cifar10")
    assert recipe.head_bias > 0
    model = create_model(recipe.model, **recipe.model_options).eval()
    x = torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        plain = model.classifier[1](model.forward_features(x))
        init_head_bias(model, recipe.head_bias)
        biased = model.classifier[1](model.forward_features(x))
    assert (plain <= 0).any()  # with a zero bias some class logits start in the ReLU's dead zone
    assert (biased > 0).all()  # with the recipe's bias none do
    torch.testing.assert_close(biased - plain, torch.full_like(plain, recipe.head_bias))


def test_csv_log_keeps_rows_before_the_resumed_step(tmp_path) -> None:
    import csv

    from squeezenet.train.logs import ResumableCSVLogger

    first = ResumableCSVLogger(tmp_path, name="logs", version="csv")
    for step, loss in ((9, 2.0), (19, 1.5), (29, 1.2)):  # the run is killed after its checkpoint at step 20
        first.log_metrics({"train/loss": loss, "epoch": step // 10}, step=step)
    first.log_metrics({"val/top1": 0.5, "epoch": 1}, step=19)
    first.save()
    resumed = ResumableCSVLogger(tmp_path, name="logs", version="csv", keep_before_step=20)
    resumed.log_metrics({"train/loss": 1.1, "epoch": 2}, step=29)
    resumed.save()
    rows = list(csv.DictReader((tmp_path / "logs" / "csv" / "metrics.csv").open()))
    assert [(r["step"], r["train/loss"], r["val/top1"]) for r in rows] == [
        ("9", "2.0", ""), ("19", "1.5", ""), ("19", "", "0.5"), ("29", "1.1", "")]

    fresh = ResumableCSVLogger(tmp_path, name="logs", version="csv")  # not resuming: a new log, as Lightning does
    with pytest.warns(UserWarning, match="will be deleted"):
        fresh.log_metrics({"train/loss": 3.0, "epoch": 0}, step=9)
    fresh.save()
    assert len(list(csv.DictReader((tmp_path / "logs" / "csv" / "metrics.csv").open()))) == 1


def test_tensorboard_log_drops_the_interrupted_steps_on_resume(tmp_path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(purge_step: int | None) -> list[tuple[int, float]]:
        root = tmp_path / str(purge_step)
        first = TensorBoardLogger(root, name="logs", version="tb")
        for step, loss in ((9, 2.0), (19, 1.5), (29, 1.2)):  # killed after the checkpoint at step 20
            first.log_metrics({"train/loss": loss}, step=step)
        first.finalize("failed")
        # event files sort by name (time, host, pid, a per-process counter): written in one process within one second,
        # the counter decides, and 10 sorts before 9. Date the killed run's file a second earlier, as a real one is.
        for event_file in (root / "logs" / "tb").glob("events.out.tfevents.*"):
            stamp = event_file.name.split(".")[3]
            event_file.rename(event_file.with_name(event_file.name.replace(stamp, str(int(stamp) - 1), 1)))
        resumed = TensorBoardLogger(root, name="logs", version="tb", purge_step=purge_step)  # as train() builds it
        resumed.log_metrics({"train/loss": 1.1}, step=29)
        resumed.finalize("success")
        events = EventAccumulator(str(root / "logs" / "tb"))
        events.Reload()
        return [(e.step, round(e.value, 3)) for e in events.Scalars("train/loss")]

    assert scalars(purge_step=20) == [(9, 2.0), (19, 1.5), (29, 1.1)]
    assert scalars(purge_step=None) == [(9, 2.0), (19, 1.5), (29, 1.2), (29, 1.1)]  # without it: step 29 twice


def test_final_validation_after_a_budget_stop_is_drawn_at_the_last_trained_epoch(tmp_path):
    """A budget stop mid-epoch 3 (0-based 2): Lightning logs the final validation under epoch 3, never trained."""
    from squeezenet.train.plots import align_final_validation, plot_curves, read_epoch_metrics

    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train/loss_epoch,train/acc,val/top1,lr\n"
                   "0,9,2.0,0.3,0.35,0.1\n1,19,1.5,0.5,0.52,0.05\n2,24,1.2,0.6,,0.01\n3,24,,,0.61,\n")
    aligned = align_final_validation(read_epoch_metrics(csv))
    assert sorted(aligned["val/top1"]) == [0, 1, 2] and aligned["val/top1"][2] == 0.61
    assert sorted(aligned["train/loss"]) == [0, 1, 2] and aligned["lr"] == {0: 0.1, 1: 0.05, 2: 0.01}
    png = plot_curves(csv, tmp_path / "curves.png", "t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
