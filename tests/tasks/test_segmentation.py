"""Segmenters: masks from polygons and PNGs, mask-aware augmentation, mIoU against a direct count, training, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from squeezenet import create_model
from squeezenet.data.masks import IGNORE_INDEX, draw_mask, read_mask_folder, resolve_masks
from squeezenet.data.segmentation import SegmentationDataset, collate_masks
from squeezenet.errors import SqueezeNetError

TINY = {"num_classes": 3, "image_size": 64, "body": "v1.1", "batch_norm": True}


def polygon_folder(root: Path, n: int = 10, size: int = 64, seed: int = 0) -> Path:
    """``n`` images, each a red square (class 0) and a green triangle (class 1) on grey, with YOLO polygon labels."""
    g = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("red\ngreen\n")
    for i in range(n):
        pixels = np.full((size, size, 3), 90, np.uint8)
        side = int(g.integers(size // 4, size // 2))
        x0, y0 = (int(v) for v in g.integers(0, size - side, 2))
        pixels[y0:y0 + side, x0:x0 + side] = (220, 30, 30)
        square = [x0, y0, x0 + side, y0, x0 + side, y0 + side, x0, y0 + side]
        tx, ty = (int(v) for v in g.integers(0, size - 20, 2))
        triangle = [tx, ty + 20, tx + 10, ty, tx + 20, ty + 20]
        image = Image.fromarray(pixels)
        from PIL import ImageDraw

        ImageDraw.Draw(image).polygon(list(zip(triangle[0::2], triangle[1::2])), fill=(30, 220, 30))
        image.save(root / "images" / f"{i:03d}.png")
        lines = [f"1 {' '.join(f'{v / size:.6f}' for v in triangle)}", f"0 {' '.join(f'{v / size:.6f}' for v in square)}"]
        (root / "labels" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    return root


def png_folder(root: Path, n: int = 4, size: int = 32) -> Path:
    """VOC's layout: images/, palette masks/ (values 0..2, a 255 border), classes.txt with the background."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    for i in range(n):
        Image.fromarray(np.full((size, size + 8, 3), 20 * i % 256, np.uint8)).save(root / "images" / f"{i}.jpg")
        values = np.zeros((size, size + 8), np.uint8)
        values[4:12, 4:20] = 1 + i % 2
        values[0, :] = IGNORE_INDEX
        mask = Image.fromarray(values, mode="P")
        mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (253 * 3))
        mask.save(root / "masks" / f"{i}.png")
    return root


def test_polygons_become_masks_smaller_objects_in_front(tmp_path) -> None:
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("big\nsmall\n")
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(root / "images" / "a.png")
    # the small square first in the file, the big one (containing it) after: the small one must stay visible
    (root / "labels" / "a.txt").write_text("1 0.4 0.4 0.6 0.4 0.6 0.6 0.4 0.6\n0 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n")
    masks = read_mask_folder(root)
    assert masks.classes == ["background", "big", "small"]
    mask = draw_mask(masks.samples[0], (40, 80), 3)
    assert mask.shape == (40, 80) and mask.dtype == torch.uint8
    assert mask[0, 0] == 0 and mask[20, 40] == 2 and mask[8, 16] == 1 and mask[20, 70] == 1
    share_small = float((mask == 2).float().mean())
    assert 0.03 < share_small < 0.05  # a 0.2 x 0.2 square: 4% of the pixels


def test_png_masks_read_with_their_palette_indices_and_the_ignore_value(tmp_path) -> None:
    train, val = resolve_masks(png_folder(tmp_path / "voc", n=10))
    assert (len(train), len(val)) == (8, 2) and train.classes == ["background", "cat", "dog"]
    image, mask = SegmentationDataset(train, 32).pair(0)
    assert mask.shape == image.shape[-2:] == (32, 40)
    assert set(mask.unique().tolist()) == {0, 2, IGNORE_INDEX}  # train's first image is the second file: a dog


def _write_mask(values: np.ndarray):
    return lambda root: Image.fromarray(values).save(root / "masks" / "0.png")


@pytest.mark.parametrize("mutate, words", [
    (_write_mask(np.zeros((30, 40), np.uint8)), "a 40x30 mask for a 40x32 image"),
    (_write_mask(np.full((32, 40), 7, np.uint8)), "value 7 is no class"),
    (_write_mask(np.zeros((32, 40, 3), np.uint8)), "a RGB image, not a mask"),
    (lambda r: (r / "masks" / "0.png").rename(r / "masks" / "9.png"), "a mask without an image"),
])
def test_bad_masks_are_one_line_naming_the_file(tmp_path, mutate, words) -> None:
    root = png_folder(tmp_path / "voc")
    mutate(root)
    with pytest.raises(SqueezeNetError, match=words) as caught:
        masks = read_mask_folder(root)
        SegmentationDataset(masks, 32)[0]
    assert "\n" not in str(caught.value) and "0.png" in str(caught.value) or "9.png" in str(caught.value)


def test_an_image_without_its_mask_and_a_box_among_polygons_are_errors(tmp_path) -> None:
    root = png_folder(tmp_path / "voc")
    (root / "masks" / "1.png").unlink()
    with pytest.raises(SqueezeNetError, match=r"1\.jpg: no mask"):
        read_mask_folder(root)
    yolo = polygon_folder(tmp_path / "yolo", n=2)
    (yolo / "labels" / "001.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(SqueezeNetError, match=r"001\.png: object 1 of its labels is a box"):
        read_mask_folder(yolo)


def test_a_class_selection_keeps_those_classes_and_makes_the_others_background(tmp_path) -> None:
    from squeezenet.data.boxes import read_yolo_folder

    shapes = read_mask_folder(polygon_folder(tmp_path / "yolo", n=2))
    green = shapes.only(["green"])
    assert green.classes == ["background", "green"]
    full, picked = (draw_mask(m.samples[0], (64, 64), len(m.classes)) for m in (shapes, green))
    assert torch.equal(picked, torch.where(full == 2, 1, 0).to(torch.uint8)) and (picked == 1).sum() > 50

    voc = read_mask_folder(png_folder(tmp_path / "voc", n=2))  # file 1 holds a dog (2), file 0 a cat (1)
    dogs = voc.only(["dog"])
    cat, dog = (draw_mask(s, (32, 40), 2) for s in dogs.samples)
    assert set(cat.unique().tolist()) == {0, IGNORE_INDEX} and set(dog.unique().tolist()) == {0, 1, IGNORE_INDEX}
    assert torch.equal(dog, draw_mask(voc.samples[1], (32, 40), 3).masked_fill(dog == 1, 1))
    swapped = voc.only(["dog", "cat"]).only(["cat"])  # selections chain: cat is 2 then 1
    assert torch.equal(draw_mask(swapped.samples[0], (32, 40), 2), draw_mask(voc.samples[0], (32, 40), 3))

    boxes = read_yolo_folder(tmp_path / "yolo").only(["green"])
    assert boxes.classes == ["green"] and all(s.labels.tolist() == [0] and len(s.outlines) == 1 for s in boxes.samples)
    for bad, words in ((["purple"], "no class 'purple' .its classes: background, red, green"),
                       (["background"], "always kept"), (["red", "red"], "selected twice")):
        with pytest.raises(SqueezeNetError, match=words):
            shapes.only(bad)


def test_training_and_evaluation_follow_a_class_selection(tmp_path) -> None:
    from squeezenet.inference.segmentation import evaluate_segmenter
    from squeezenet.train import load_recipe
    from squeezenet.train.segmentation import segmentation_setup

    data = polygon_folder(tmp_path / "shapes", n=10)
    small = {"model_options.body": "v1.1", "model_options.batch_norm": True, "data.image_size": 64}
    recipe = load_recipe("segment", {**small, "data.classes": ["green"]})
    setup = segmentation_setup(recipe, str(data), None)
    assert setup.classes == ["background", "green"] and setup.model.meta.num_classes == 2
    _, mask = setup.val.pair(0)
    assert set(mask.unique().tolist()) == {0, 1}
    model = setup.model.eval()  # a model of the selection is scored on the data's pixels of its classes
    scores = evaluate_segmenter(model, data, split="val")
    assert set(scores.per_class) <= {"background", "green"} and scores.images == 2
    again = segmentation_setup(load_recipe("segment", small), str(data), setup.model)
    assert again.classes == ["background", "green"]  # fine-tuning it on the full data selects its classes


def _inside(region: torch.Tensor) -> torch.Tensor:
    """The pixels of ``region`` whose 8 neighbours are in it too (a resized edge may go either way)."""
    return -torch.nn.functional.max_pool2d(-region[None].float(), 3, stride=1, padding=1)[0] > 0.5


def test_augmentation_moves_masks_with_their_pixels(tmp_path) -> None:
    """Crops, flips and the warp move the mask with the pixels it labels (nearest sampling: no class is invented at
    a border). The geometric steps of the ``segment`` augmentation run on an image that spells its own mask; with
    ``flip`` the drawn colours must carry their labels through the dataset."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from squeezenet.data.segmentation import mask_transform

    train, _ = resolve_masks(polygon_folder(tmp_path / "d", n=10))
    geometric = v2.Compose([t for t in mask_transform("segment", 48).transforms
                            if not isinstance(t, v2.RandomPhotometricDistort)])
    for i in range(8):
        _, mask = SegmentationDataset(train, 48).pair(i)
        spelled = mask[None].repeat(3, 1, 1) * 100  # class c -> grey level 100c
        torch.manual_seed(i)
        image, moved = geometric(tv_tensors.Image(spelled), tv_tensors.Mask(mask))
        assert moved.shape == (48, 48) and set(moved.unique().tolist()) <= {0, 1, 2}
        level = (image[0].float() / 100).round()
        clean = (image[0].float() - 100 * level).abs() < 10  # antialiased edges fall between levels: left out
        assert float(clean.float().mean()) > 0.9
        assert float((level == moved)[clean].float().mean()) > 0.995
    data = SegmentationDataset(train, 48, "flip", seed=3)
    for i in range(len(data)):
        data.set_epoch(i)
        image, mask, _ = data[i]
        red, green = _inside((image[0] > 180) & (image[1] < 80)), _inside((image[1] > 180) & (image[0] < 80))
        assert float((mask[red] == 1).float().mean()) > 0.98 and float((mask[green] == 2).float().mean()) > 0.98
    x, masks, index, skipped = collate_masks([data[i] for i in range(3)])
    assert x.shape == (3, 3, 48, 48) and masks.dtype == torch.int64 and index.tolist() == [0, 1, 2] and not skipped


@pytest.mark.parametrize("name", ["lraspp_squeezenet", "squeezeseg"])
def test_segmenters_give_full_resolution_logits_for_both_bodies(name) -> None:
    for body in ("v1.0", "v1.1"):
        model = create_model(name, **{**TINY, "body": body, "image_size": 96}).eval()
        with torch.no_grad():
            out = model(torch.randn(2, 3, 96, 96))
        assert out.shape == (2, 3, 96, 96) and model.meta.task == "segment"


@pytest.mark.parametrize("name", ["lraspp_squeezenet", "squeezeseg"])
def test_a_tiny_segmenter_learns_the_shapes_of_its_training_images(tmp_path, name) -> None:
    """Both heads can fit a few images: the squares' and triangles' pixels end up labelled, not just background
    (what a broken decoder or a mask misaligned with its image would never reach)."""
    data = polygon_folder(tmp_path / "shapes", n=4)
    ds = SegmentationDataset(read_mask_folder(data), 64, "none")
    images, masks, _ = zip(*[ds[i] for i in range(4)])
    x, y = torch.stack(images).float() / 255, torch.stack(masks)
    torch.manual_seed(0)
    model = create_model(name, **TINY).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, y, ignore_index=IGNORE_INDEX)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predicted = model.eval()(x).argmax(1)
    for cls in (1, 2):  # IoU of each shape on the images it trained on
        iou = ((predicted == cls) & (y == cls)).sum() / ((predicted == cls) | (y == cls)).sum()
        assert iou > 0.5, (name, cls, float(iou))


def test_miou_and_pixel_accuracy_equal_a_direct_count_on_a_hand_made_case() -> None:
    """Two images of 3 classes with ignored pixels: the confusion matrix torchmetrics accumulates (as eval and
    training do) and segmentation_scores give the IoU counted directly from the pixel sets."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    from squeezenet.common.confusion import segmentation_scores

    truth = [torch.tensor([[0, 0, 1, 1], [0, 2, 2, 1], [255, 0, 0, 0]]), torch.tensor([[1, 1, 0, 0], [255, 255, 0, 0]])]
    preds = [torch.tensor([[0, 1, 1, 1], [0, 2, 0, 1], [2, 0, 0, 2]]), torch.tensor([[1, 0, 0, 0], [1, 1, 0, 2]])]
    cm = sum(multiclass_confusion_matrix(p.flatten(), t.flatten(), 3, ignore_index=IGNORE_INDEX)
             for p, t in zip(preds, truth))
    scores = segmentation_scores(cm)
    t, p = torch.cat([x.flatten() for x in truth]), torch.cat([x.flatten() for x in preds])
    keep = t != IGNORE_INDEX
    t, p = t[keep], p[keep]
    direct = [float(((t == c) & (p == c)).sum() / ((t == c) | (p == c)).sum()) for c in range(3)]
    assert scores["iou"].tolist() == pytest.approx(direct)
    assert scores["miou"] == pytest.approx(sum(direct) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(float((t == p).float().mean()))
    assert 0.3 < scores["miou"] < 0.8  # neither perfect nor empty
    absent = segmentation_scores(torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]]))  # class 2: no pixel anywhere
    assert absent["iou"][2].isnan() and absent["miou"] == pytest.approx((5 / 8 + 3 / 6) / 2)


SMALL_SEGMENTER = ["--model", "lraspp_squeezenet", "--epochs", "2", "--batch-size", "4", "--no-progress",
                   "--time-budget", "0", "--set", "data.image_size=64", "--set", "model_options.body=v1.1",
                   "--set", "model_options.batch_norm=true", "--set", "data.augment=flip"]


def test_train_eval_and_predict_a_segmenter_on_the_cli(tmp_path, capsys) -> None:
    import json

    from squeezenet.cli import main
    from squeezenet.data.images import load_rgb_image
    from squeezenet.inference.segmentation import evaluate_segmenter, read_masks, segment_images
    from squeezenet.weights import load_weights

    data = polygon_folder(tmp_path / "shapes", n=15)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "-o", str(run), *SMALL_SEGMENTER, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["miou"] <= 1 and 0 < metrics["pixel_acc"] <= 1 and metrics["train_images"] == 12
    assert (run / "curves.png").is_file()
    weights = run / "best.safetensors"
    model = load_weights(weights).eval()
    assert model.meta.classes == ("background", "red", "green") and model.meta.task == "segment"

    assert main(["eval", "-w", str(weights), "-d", str(data), "--split", "val", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    masks = read_masks(data, "val")  # the same figure counted directly, at each image's size
    hits = unions = None
    for sample in masks.samples:
        image = load_rgb_image(sample.image)
        predicted = segment_images(model, [image])[0]
        truth = draw_mask(sample, tuple(image.shape[-2:]), 3).long()
        inter = torch.stack([((predicted == c) & (truth == c)).sum() for c in range(3)])
        union = torch.stack([((predicted == c) | (truth == c)).sum() for c in range(3)])
        hits, unions = (inter, union) if hits is None else (hits + inter, unions + union)
    direct = [int(h) / int(u) for h, u in zip(hits, unions) if u > 0]
    assert scores["images"] == 3 and scores["miou"] == pytest.approx(sum(direct) / len(direct), abs=1e-9)

    out = tmp_path / "drawn"
    image = data / "images" / "001.png"
    assert main(["predict", "-w", str(weights), str(image), "-o", str(out), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)[0]
    assert set(found["classes"]) <= {"background", "red", "green"} and sum(found["classes"].values()) == pytest.approx(1)
    drawn, written = Image.open(out / "001.png"), Image.open(out / "masks" / "001.png")
    assert drawn.size == written.size == (64, 64) and written.mode == "P"
    assert torch.equal(torch.from_numpy(np.asarray(written)).long(), segment_images(model, [load_rgb_image(image)])[0])
    with pytest.raises(SqueezeNetError, match="not a segmentation folder"):
        read_masks(tmp_path / "drawn")

    sqz = tmp_path / "pruned.sqz"  # pruned while fine-tuned on the masks, judged on the validation images, paired
    assert main(["compress", "-w", str(weights), "-o", str(sqz), "--density", "0.5", "--bits", "5", "--data", str(data),
                 "--finetune-epochs", "1", "--set", "batch_size=4", "--eval", str(data), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [p["phase"] for p in summary["phases"]] == ["prune", "centroids"] and 0.45 < summary["density"] < 0.56
    assert summary["paired"]["reference_miou"] == pytest.approx(scores["miou"], abs=1e-9)
    assert summary["paired"]["miou"] == pytest.approx(evaluate_segmenter(load_weights(sqz), data, split="val").miou)


def test_exported_onnx_labels_the_pixels_of_real_images_as_pytorch_does(tmp_path) -> None:
    from conftest import require_shared
    from squeezenet import load_backbone
    from squeezenet.data.images import load_rgb_image
    from squeezenet.deploy import OnnxModel, export_onnx
    from squeezenet.inference.segmentation import segment_images

    images = [load_rgb_image(p) for p in sorted(require_shared("coco128", "images").iterdir())[:6]]
    model = create_model("lraspp_squeezenet", num_classes=5, image_size=160)
    load_backbone(model, require_shared("deep-compression", "compressed_SqueezeNet.net"))
    torch.manual_seed(0)
    for p in model.head.parameters():  # an untrained head, made to answer several classes across each image
        torch.nn.init.normal_(p, std=0.05)
    model.eval()
    path = tmp_path / "seg.onnx"
    x = torch.stack([model.meta.preprocessing.transforms()(img) for img in images[:2]])
    assert export_onnx(model, path, check_images=x).max_abs_diff < 1e-3
    ours, theirs = segment_images(model, images), segment_images(OnnxModel(path), images)
    same = sum(int((a == b).sum()) for a, b in zip(ours, theirs)) / sum(a.numel() for a in ours)
    assert same >= 0.999
    assert all(len(m.unique()) > 1 for m in ours)  # the answers vary within images: agreement is not trivial


def test_the_torchvision_reference_is_torchvisions_lraspp(tmp_path) -> None:
    """``lraspp_mobilenet_v3`` (the reference in our comparisons) computes what torchvision's own model computes
    with the same weights, and its files load back without flags."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    from squeezenet import load_weights, save_weights

    torch.manual_seed(0)
    ours = create_model("lraspp_mobilenet_v3", num_classes=4, image_size=96).eval()
    theirs = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4).eval()
    theirs.load_state_dict({k.replace("body.", "backbone.", 1).replace("head.", "classifier.", 1): v
                            for k, v in ours.state_dict().items()})
    assert ours.config.num_parameters() == sum(p.numel() for p in theirs.parameters())
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x)["out"], rtol=0, atol=0)
        again = load_weights(save_weights(ours, tmp_path / "tv.safetensors"))
        assert again.meta == ours.meta and torch.equal(again(x), ours(x))
    assert ours.meta.preprocessing.mean == (0.485, 0.456, 0.406) and ours.meta.preprocessing.crop == 96


@pytest.mark.slow
def test_a_segmenter_exports_to_executorch_labelling_pixels_as_pytorch_does(tmp_path) -> None:
    pytest.importorskip("executorch")
    from conftest import require_shared
    from squeezenet.data.images import load_rgb_image
    from squeezenet.deploy.executorch import ExecuTorchModel, export_executorch
    from squeezenet.inference.segmentation import segment_images

    images = [load_rgb_image(p) for p in sorted(require_shared("coco128", "images").iterdir())[:4]]
    torch.manual_seed(0)
    model = create_model("squeezeseg", num_classes=5, image_size=128, body="v1.1")
    for p in model.classifier.parameters():  # answers that vary across each image
        torch.nn.init.normal_(p, std=0.05)
    model.eval()
    path = tmp_path / "seg.pte"
    x = torch.stack([model.meta.preprocessing.transforms()(img) for img in images[:2]])
    export_executorch(model, path, check_images=x)
    ours, theirs = segment_images(model, images), segment_images(ExecuTorchModel(path), images)
    same = sum(int((a == b).sum()) for a, b in zip(ours, theirs)) / sum(a.numel() for a in ours)
    assert same >= 0.999 and all(len(m.unique()) > 1 for m in ours)
