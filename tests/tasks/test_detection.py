"""Detectors: labels from files, anchors and decoding, the loss, COCO mAP against pycocotools, training, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import require_shared
from squeezenet import create_model, load_backbone, load_weights, save_weights
from squeezenet.data.boxes import read_coco_json, read_yolo_folder, resolve_boxes, split_every
from squeezenet.errors import SqueezeNetError
from squeezenet.inference.detection import evaluate_detector, mean_average_precision
from squeezenet.models import decode_detections, fit_anchor_shapes
from squeezenet.train.detection import DetectionLoss

TINY = {"num_classes": 2, "image_size": 64, "body": "v1.1", "batch_norm": True}


def yolo_folder(root: Path, n: int = 12, size: int = 64, seed: int = 0) -> Path:
    """``n`` images with one or two squares each: red ones are class 0, green ones class 1 (YOLO boxes)."""
    g = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("red\ngreen\n")
    for i in range(n):
        pixels = np.full((size, size, 3), 40, np.uint8)
        lines = []
        for k in range(1 + i % 2):
            side = int(g.integers(size // 4, size // 2))
            x0, y0 = (int(v) for v in g.integers(0, size - side, 2))
            cls = (i + k) % 2
            pixels[y0:y0 + side, x0:x0 + side, cls] = 220
            lines.append(f"{cls} {(x0 + side / 2) / size:.6f} {(y0 + side / 2) / size:.6f} {side / size:.6f} {side / size:.6f}")
        Image.fromarray(pixels).save(root / "images" / f"{i:03d}.png")
        (root / "labels" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_yolo_boxes_and_polygons_read_as_pixels_fractions(tmp_path) -> None:
    root = yolo_folder(tmp_path / "d", n=3)
    (root / "labels" / "000.txt").write_text("1 0.1 0.2 0.5 0.2 0.3 0.6\n\n0 0.5 0.5 0.2 0.4\n")  # polygon, blank, box
    (root / "labels" / "002.txt").unlink()  # an image without objects is legal
    boxes = read_yolo_folder(root)
    first = boxes.samples[0]
    torch.testing.assert_close(first.boxes, torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.4, 0.3, 0.6, 0.7]]))
    assert first.labels.tolist() == [1, 0] and boxes.classes == ["red", "green"]
    assert boxes.samples[2].boxes.shape == (0, 4)
    train, val = split_every(read_yolo_folder(yolo_folder(tmp_path / "e", n=10)))
    assert [s.image.name for s in val.samples] == ["000.png", "005.png"] and len(train) == 8


@pytest.mark.parametrize("line, words", [
    ("0 0.5 0.5 0.2", "3 numbers after the class"),
    ("5 0.5 0.5 0.2 0.2", "class 5 is not one of the 2 classes"),
    ("0 0.5 0.5 1.7 0.2", "coordinate 1.7 is outside 0..1"),
    ("0 0.9 0.5 0.4 0.2", "the box reaches outside the image"),
    ("0 0.5 0.5 0 0.2", "an empty box"),
    ("zero 0.5 0.5 0.2 0.2", "not a label line"),
    ("0 0.5 nan 0.2 0.2", "outside 0..1"),
])
def test_bad_label_lines_are_one_error_naming_file_and_line(tmp_path, line, words) -> None:
    root = yolo_folder(tmp_path / "d", n=2)
    (root / "labels" / "001.txt").write_text("0 0.5 0.5 0.2 0.2\n" + line + "\n")
    with pytest.raises(SqueezeNetError, match=words) as info:
        read_yolo_folder(root)
    assert str(info.value).startswith(f"{root / 'labels' / '001.txt'}:2: ") and "\n" not in str(info.value)


def test_a_label_without_its_image_and_a_missing_class_list_are_errors(tmp_path) -> None:
    root = yolo_folder(tmp_path / "d", n=2)
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(SqueezeNetError, match="orphan.txt: a label file without an image"):
        read_yolo_folder(root)
    (root / "labels" / "orphan.txt").unlink()
    (root / "classes.txt").unlink()
    with pytest.raises(SqueezeNetError, match="no classes.txt"):
        resolve_boxes(root)


def test_coco_json_boxes_match_the_yolo_reading_of_the_same_objects(tmp_path) -> None:
    root = yolo_folder(tmp_path / "d", n=4)
    yolo = read_yolo_folder(root)
    images, annotations = [], []
    for i, s in enumerate(yolo.samples):
        images.append({"id": i + 1, "file_name": s.image.name, "width": 64, "height": 64})
        for b, c in zip(s.boxes.tolist(), s.labels.tolist()):
            x1, y1, x2, y2 = (v * 64 for v in b)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 10 + c,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 10, "name": "red"}, {"id": 11, "name": "green"}]}))
    coco = read_coco_json(path, root / "images")
    assert coco.classes == ["red", "green"]
    for a, b in zip(coco.samples, yolo.samples):
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-5, rtol=0)
        assert torch.equal(a.labels, b.labels)
    (root / "annotations.json").write_bytes(path.read_bytes())  # a COCO folder: train/eval/compress take it as --data
    (root / "labels").rename(tmp_path / "yolo-labels")
    train, val = resolve_boxes(root)
    assert [s.image.name for s in val.samples] == ["000.png"] and train.classes == ["red", "green"]
    torch.testing.assert_close(train.samples[0].boxes, yolo.samples[1].boxes, atol=1e-5, rtol=0)
    annotations[0]["category_id"] = 99
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 10, "name": "red"}]}))
    with pytest.raises(SqueezeNetError, match="annotation 0: category_id 99 is not among the categories"):
        read_coco_json(path, root / "images")


def test_map_equals_pycocotools_on_a_hand_made_case() -> None:
    """Three images, two classes: a hit, a loose box, a duplicate, a miss and a false alarm. Our mAP (torchmetrics)
    must be COCOeval's numbers, computed here directly from COCO-format dictionaries."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = [{"boxes": torch.tensor([[10., 10., 50., 50.], [60., 60., 90., 100.]]), "labels": torch.tensor([0, 1])},
             {"boxes": torch.tensor([[0., 0., 30., 40.]]), "labels": torch.tensor([0])},
             {"boxes": torch.tensor([[20., 30., 70., 80.], [5., 5., 15., 25.]]), "labels": torch.tensor([1, 1])}]
    preds = [{"boxes": torch.tensor([[12., 11., 49., 52.], [58., 65., 92., 99.], [11., 10., 50., 48.]]),
              "scores": torch.tensor([0.9, 0.8, 0.3]), "labels": torch.tensor([0, 1, 0])},
             {"boxes": torch.tensor([[5., 8., 35., 40.], [60., 60., 80., 80.]]), "scores": torch.tensor([0.6, 0.7]),
              "labels": torch.tensor([0, 1])},
             {"boxes": torch.tensor([[20., 28., 72., 80.]]), "scores": torch.tensor([0.55]), "labels": torch.tensor([1])}]
    ours = mean_average_precision(preds, truth)
    gt = {"images": [{"id": i, "width": 100, "height": 100} for i in range(3)],
          "categories": [{"id": 0}, {"id": 1}], "annotations": []}
    dt = []
    for i, (t, p) in enumerate(zip(truth, preds)):
        for b, c in zip(t["boxes"].tolist(), t["labels"].tolist()):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": c, "iscrowd": 0,
                                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, c, s in zip(p["boxes"].tolist(), p["labels"].tolist(), p["scores"].tolist()):
            dt.append({"image_id": i, "category_id": c, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    run = COCOeval(coco, coco.loadRes(dt), "bbox")
    run.evaluate()
    run.accumulate()
    run.summarize()
    assert float(ours["map"]) == pytest.approx(run.stats[0], abs=1e-6)
    assert float(ours["map_50"]) == pytest.approx(run.stats[1], abs=1e-6)
    assert 0.2 < run.stats[0] < run.stats[1] < 1.0  # the case is neither perfect nor empty


def test_a_resample_scored_from_one_matching_equals_torchmetrics_on_the_resampled_images() -> None:
    """Bootstrap intervals re-score resamples from one pycocotools matching (ImageMatches); a resample's mAP, mAP@.5
    and per-class AP@.5 must be what torchmetrics computes on that list of images, an image drawn twice included."""
    from squeezenet.inference.coco_resample import ImageMatches
    from squeezenet.inference.detection import _per_class_ap50

    g = torch.Generator().manual_seed(0)

    def boxes(n: int) -> torch.Tensor:
        corner = torch.rand(n, 2, generator=g) * 200
        return torch.cat([corner, corner + 2 + torch.rand(n, 2, generator=g) * 100], 1)

    truth, preds = [], []
    for _ in range(30):  # objects of 4 classes; found with jitter, plus false alarms
        n, m = int(torch.randint(0, 6, (1,), generator=g)), int(torch.randint(0, 10, (1,), generator=g))
        t = {"boxes": boxes(n), "labels": torch.randint(0, 4, (n,), generator=g)}
        truth.append(t)
        preds.append({"boxes": torch.cat([t["boxes"] + 5 * torch.randn(n, 4, generator=g), boxes(m)]),
                      "scores": torch.rand(n + m, generator=g),
                      "labels": torch.cat([t["labels"], torch.randint(0, 4, (m,), generator=g)])})
    matches = ImageMatches(preds, truth)
    pick = torch.randint(0, 30, (30,), generator=g).tolist()
    assert len(set(pick)) < 30  # some images drawn twice, some not at all
    for chosen in (list(range(30)), pick):
        p, t = [preds[i] for i in chosen], [truth[i] for i in chosen]
        want = mean_average_precision(p, t)
        got = matches.scores(chosen)
        assert got["map"] == pytest.approx(float(want["map"]), abs=1e-6)
        assert got["map50"] == pytest.approx(float(want["map_50"]), abs=1e-6)
        present = sorted({int(c) for x in t for c in x["labels"]})
        assert sorted(got["ap50"]) == present
        assert [got["ap50"][c] for c in present] == pytest.approx(_per_class_ap50(p, t, present), abs=1e-6)
    assert 0.05 < got["map"] < got["map50"] < 0.9  # neither perfect nor empty


def test_decoding_zero_deltas_gives_the_anchor_in_image_pixels() -> None:
    model = create_model("squeezedet", **TINY).eval()
    anchors = model.anchors
    out = torch.full((1, len(anchors), 4 + 1 + 2), -10.0)
    out[..., :4] = 0.0
    out[0, :, 4] = 10.0  # background everywhere ...
    k = len(anchors) // 2
    out[0, k, 4], out[0, k, 4 + 2] = -10.0, 10.0  # ... but anchor k, class 1 (green)
    found = decode_detections(out, anchors, 64, image_sizes=[(128, 256)])[0]
    assert found["labels"].tolist() == [1] and found["scores"][0] > 0.99
    expected = anchors[k].clamp(0, 64) * torch.tensor([4.0, 2.0, 4.0, 2.0])  # width 256/64, height 128/64
    torch.testing.assert_close(found["boxes"][0], expected)
    # ConvDet's layout: anchor index = (row * columns + column) * shapes + shape, centred on its cell
    shapes = len(model.config.anchors)
    cells = int(round((len(anchors) / shapes) ** 0.5))
    row, col, shape = 1, 2, 3
    a = anchors[(row * cells + col) * shapes + shape]
    torch.testing.assert_close((a[:2] + a[2:]) / 2, torch.tensor([(col + 0.5) * 64 / cells, (row + 0.5) * 64 / cells]))


def test_anchor_shapes_fitted_by_kmeans_find_the_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    sizes = torch.cat([torch.tensor([[0.1, 0.2]]) + 0.005 * torch.randn(50, 2, generator=g),
                       torch.tensor([[0.5, 0.3]]) + 0.005 * torch.randn(50, 2, generator=g)])
    shapes = fit_anchor_shapes(sizes, k=2)
    torch.testing.assert_close(torch.tensor(shapes), torch.tensor([[0.1, 0.2], [0.5, 0.3]]), atol=0.01, rtol=0)


def test_a_detector_of_one_class_is_scored_on_that_class_of_richer_data(tmp_path) -> None:
    from squeezenet.inference.detection import boxes_for

    data = yolo_folder(tmp_path / "d", n=6)
    model = create_model("squeezedet", **{**TINY, "num_classes": 1}).eval()
    model.meta = model.meta.replace(classes=("green",))
    greens = boxes_for(model.meta, read_yolo_folder(data))
    assert greens.classes == ["green"] and [len(s.labels) for s in greens.samples] == [0, 1, 0, 1, 0, 1]
    scores = evaluate_detector(model, data)
    assert (scores.images, scores.objects) == (6, 3)  # the three green squares, none of the six red ones
    with pytest.raises(SqueezeNetError, match="its 2 classes are not the model's 1"):
        model.meta = model.meta.replace(classes=("blue",))
        evaluate_detector(model, data)


@pytest.mark.parametrize("name", ["squeezedet", "ssdlite_squeezenet", "ssdlite_mobilenet_v3"])
def test_a_tiny_detector_learns_synthetic_boxes_in_a_few_steps(tmp_path, name) -> None:
    from squeezenet.data.detection import DetectionDataset, collate_detections

    boxes = read_yolo_folder(yolo_folder(tmp_path / "d", n=8))
    x, targets, _, _ = collate_detections([DetectionDataset(boxes, 64)[i] for i in range(8)])
    torch.manual_seed(0)
    options = TINY if name != "ssdlite_mobilenet_v3" else {"num_classes": 2, "image_size": 64}
    model = create_model(name, **options).train()
    loss_fn = DetectionLoss(model.anchors)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        parts = loss_fn(model(x.float() / 255), targets)
        loss = parts["boxes"] + parts["classes"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_the_torchvision_reference_is_torchvisions_ssdlite_and_decodes_as_torchvision_does(tmp_path) -> None:
    """``ssdlite_mobilenet_v3`` (the reference in our comparisons) computes what torchvision's own SSD computes with
    the same weights: the raw outputs, the default boxes, and after our decoding the boxes torchvision's
    ``postprocess_detections`` keeps (an independent check of decode_detections too)."""
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large
    from torchvision.models.detection.image_list import ImageList

    from squeezenet.models.detector import MIN_BOX

    torch.manual_seed(0)
    ours = create_model("ssdlite_mobilenet_v3", num_classes=3, image_size=128).eval()
    with torch.no_grad():  # spread the class scores out: a fresh head scores every class near 1/4
        for p in ours.head.classification_head.parameters():
            p.mul_(30)
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4).eval()
    tv.load_state_dict(ours.state_dict())
    assert ours.config.num_parameters() == sum(p.numel() for p in tv.parameters())
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        raw = ours(x)
        features = list(tv.backbone(x).values())
        head = tv.head(features)
    torch.testing.assert_close(raw, torch.cat([head["bbox_regression"], head["cls_logits"]], -1), rtol=0, atol=0)
    anchors = tv.anchor_generator(ImageList(x, [(128, 128)] * 2), features)
    assert torch.equal(anchors[0], ours.anchors)
    tv.score_thresh, tv.topk_candidates, tv.detections_per_img = 0.05, 10_000, 10_000
    expected = tv.postprocess_detections(head, anchors, [(128, 128)] * 2)
    found = decode_detections(raw, ours.anchors, 128, score_threshold=0.05, nms_iou=tv.nms_thresh,
                              max_detections=10_000, candidates=10_000)
    def rows(d: dict[str, torch.Tensor], label_offset: int) -> np.ndarray:  # one row per box, in a canonical order
        table = torch.cat([(d["labels"] + label_offset)[:, None].float(), d["scores"][:, None], d["boxes"]], 1).numpy()
        return table[np.lexsort(np.round(table, 4).T[::-1])]

    for got, want in zip(found, expected):
        b = want["boxes"]
        real = ((b[:, 2] - b[:, 0]) >= MIN_BOX) & ((b[:, 3] - b[:, 1]) >= MIN_BOX)  # ours drops zero-width boxes
        assert len(got["scores"]) == int(real.sum()) > 5
        np.testing.assert_allclose(rows(got, 1), rows({k: v[real] for k, v in want.items()}, 0), atol=1e-4)
    path = save_weights(ours, tmp_path / "tv.safetensors")
    again = load_weights(path)
    assert again.meta == ours.meta and torch.equal(again(x), raw)
    assert again.meta.preprocessing.mean == (0.5, 0.5, 0.5) and again.meta.preprocessing.crop == 128
    with pytest.raises(SqueezeNetError, match="SqueezeNet body"):
        load_backbone(again, save_weights(create_model("squeezenet1_1"), tmp_path / "body.safetensors"))


def test_detector_files_round_trip_and_take_an_imagenet_body(tmp_path) -> None:
    model = create_model("squeezedet", **TINY).eval()
    path = save_weights(model, tmp_path / "d.safetensors")
    again = load_weights(path)
    x = torch.randn(1, 3, 64, 64)
    assert again.meta == model.meta and torch.equal(again(x), model(x))
    body = create_model("squeezenet1_1", batch_norm=True).eval()
    body.meta = body.meta.replace(source="imagenet here")
    body_path = save_weights(body, tmp_path / "body.safetensors")
    load_backbone(model, body_path)
    assert torch.equal(model.backbone[0].weight, body.features[0].weight)
    assert model.meta.preprocessing.mean == body.meta.preprocessing.mean and model.meta.preprocessing.crop == 64
    with pytest.raises(SqueezeNetError, match="its layers are not this detector's body"):
        load_backbone(model, save_weights(create_model("squeezenet1_0"), tmp_path / "v10.safetensors"))
    from squeezenet.deploy import Classifier, ObjectDetector

    images = yolo_folder(tmp_path / "images", n=2) / "images"
    found = ObjectDetector.load(path).detect([images], threshold=0.0)
    assert [Path(f.path).name for f in found] == ["000.png", "001.png"] and all(len(f.boxes) for f in found)
    assert found[0].boxes.max() <= 64 and set(found[0].names) <= {"class 0", "class 1"}
    with pytest.raises(SqueezeNetError, match="not a detector"):
        ObjectDetector.load(body_path)
    with pytest.raises(SqueezeNetError, match="use detect"):
        ObjectDetector.load(path).predict([images])
    assert Classifier.load(body_path).predict([images / "000.png"])[0].top


def test_published_body_under_squeezedet_keeps_its_caffe_preprocessing() -> None:
    model = create_model("squeezedet", num_classes=3)
    load_backbone(model, require_shared("deep-compression", "compressed_SqueezeNet.net"))
    p = model.meta.preprocessing
    assert (p.channel_order, p.value_range, p.mean, p.crop, p.resize_mode) == ("BGR", 255.0, (104.0, 117.0, 123.0), 320, "square")


SMALL_DETECTOR = ["--model", "squeezedet", "--epochs", "2", "--batch-size", "4", "--no-progress", "--time-budget", "0",
                  "--set", "data.image_size=64", "--set", "model_options.body=v1.1",
                  "--set", "model_options.batch_norm=true", "--set", "data.augment=flip"]


@pytest.mark.slow
def test_train_a_detector_kill_and_resume_exactly_then_eval_and_predict(tmp_path, capsys) -> None:
    import subprocess
    import sys

    from squeezenet.cli import main

    data = yolo_folder(tmp_path / "boxes", n=20)
    reference = tmp_path / "reference"
    assert main(["train", "--data", str(data), "-o", str(reference), *SMALL_DETECTOR, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["map50"] <= 1 and 0 <= metrics["map"] <= metrics["map50"] and "top1" not in metrics
    assert metrics["train_images"] == 16 and metrics["val_images"] == 4  # every fifth image validates
    assert (reference / "curves.png").is_file()

    killed = tmp_path / "killed"  # the second last.ckpt write (end of epoch 2) is torn by a SIGKILL
    tests = Path(__file__).parents[1]
    env = {**__import__("os").environ, "KILL_AT_SAVE": "2", "FAULT_MATCH": "last.ckpt", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(tests.parent / "src")}
    done = subprocess.run([sys.executable, str(tests / "train" / "fault_worker.py"), "train", "--data", str(data),
                           "-o", str(killed), *SMALL_DETECTOR], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    capsys.readouterr()
    ours = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    ref = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key in ref:  # the anchors fitted, the body built and every augmentation replayed as in the run never killed
        torch.testing.assert_close(ours[key], ref[key], rtol=0, atol=1e-6)

    weights = str(reference / "best.safetensors")
    assert load_weights(weights).meta.classes == ("red", "green")
    assert main(["eval", "-w", weights, "-d", str(data), "--split", "val", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    # best.safetensors holds the best epoch, scored as training scored it
    assert scores["images"] == 4 and scores["map50"] == pytest.approx(metrics["best_map50"], abs=1e-6)
    assert main(["eval", "-w", weights, "-d", str(data), "--reference", weights, "--json"]) == 0
    paired = json.loads(capsys.readouterr().out)
    assert paired["map50_diff"] == 0 and paired["map50_diff_ci95"] == [0, 0] and paired["images"] == 20
    sqz = tmp_path / "pruned.sqz"  # pruned while fine-tuned on the boxes, judged on the validation images, paired
    assert main(["compress", "-w", weights, "-o", str(sqz), "--density", "0.5", "--bits", "5", "--data", str(data),
                 "--finetune-epochs", "1", "--set", "batch_size=4", "--eval", str(data), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["paired"]["images"] == 4 and [p["phase"] for p in summary["phases"]] == ["prune", "centroids"]
    assert summary["paired"]["reference_map50"] == pytest.approx(scores["map50"], abs=1e-6)
    assert summary["paired"]["map50"] == pytest.approx(
        evaluate_detector(load_weights(sqz), data, split="val").map50, abs=1e-6)
    assert 0.45 < summary["density"] < 0.56 and summary["ratio_to_input"] > 5
    assert main(["compress", "-w", weights, "-o", str(tmp_path / "d.sqz"), "--density", "0.5", "--data", str(data),
                 "--finetune-epochs", "1", "--distill", "0.5"]) == 1
    assert "distillation is for classifiers" in capsys.readouterr().err
    out = tmp_path / "drawn"
    image = data / "images" / "001.png"
    assert main(["predict", "-w", weights, str(image), "--threshold", "0", "-o", str(out), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)[0]
    assert found["objects"] and all(o["label"] in ("red", "green") and len(o["box"]) == 4 for o in found["objects"])
    drawn = np.asarray(Image.open(out / "001.png"))
    assert drawn.shape == (64, 64, 3) and not np.array_equal(drawn, np.asarray(Image.open(image)))  # boxes drawn


def test_bad_labels_and_a_classifier_on_boxes_are_one_line_on_the_cli(tmp_path, capsys) -> None:
    from squeezenet.cli import main

    data = yolo_folder(tmp_path / "boxes", n=6)
    (data / "labels" / "003.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n")
    assert main(["train", "--data", str(data), "-o", str(tmp_path / "run"), *SMALL_DETECTOR]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"squeezenet: error: {data / 'labels' / '003.txt'}:2: 3 numbers after the class; a box has 4 "
                   "(cx cy w h), a polygon an even number >= 6 (x y pairs)"]
    assert not (tmp_path / "run").exists()
    classifier = save_weights(create_model("squeezenet1_1", num_classes=2), tmp_path / "c.safetensors")
    assert main(["predict", "-w", str(classifier), str(data / "images" / "000.png"), "--threshold", "0.5"]) == 1
    assert "--threshold and -o are for detectors" in capsys.readouterr().err


@pytest.mark.slow
def test_exported_onnx_gives_pytorchs_boxes_on_real_images(tmp_path) -> None:
    from torchvision.ops import box_iou

    from squeezenet.data.images import load_rgb_image
    from squeezenet.deploy import OnnxModel, export_onnx
    from squeezenet.inference.detection import detect_images

    images = [load_rgb_image(p) for p in sorted(require_shared("coco128", "images").iterdir())[:6]]
    model = create_model("squeezedet", num_classes=80, image_size=192)
    load_backbone(model, require_shared("deep-compression", "compressed_SqueezeNet.net"))
    torch.nn.init.normal_(model.convdet.weight, std=0.02)  # an untrained head, made to answer with varied scores
    model.eval()
    path = tmp_path / "det.onnx"
    x = torch.stack([model.meta.preprocessing.transforms()(img) for img in images[:2]])
    assert export_onnx(model, path, check_images=x).max_abs_diff < 1e-3
    onnx = OnnxModel(path)
    ours = detect_images(model, images, threshold=0.06, max_detections=1000)
    theirs = detect_images(onnx, images, threshold=0.05, max_detections=1000)  # a margin: no box lost at the edge
    assert sum(len(f["boxes"]) for f in ours) > 20
    for a, b in zip(ours, theirs):  # every PyTorch box has its ONNX twin: same class, IoU > 0.99, score within 1e-3
        iou = box_iou(a["boxes"], b["boxes"]) * (a["labels"][:, None] == b["labels"][None, :])
        best, index = iou.max(1)
        assert bool((best > 0.99).all()), best.min()
        assert (a["scores"] - b["scores"][index]).abs().max() < 1e-3


def test_bench_measures_a_detector_on_the_images_of_a_box_folder(tmp_path) -> None:
    """``bench -d`` takes a detector's box folder: its images, unlabelled (no top-1), every runtime's per-anchor
    answers judged against PyTorch fp32 (PyTorch alone here: the exports' fidelity has its own tests)."""
    from squeezenet import model_from_config
    from squeezenet.deploy.bench import bench
    from squeezenet.models.config import FireSpec, v1_1_config
    from squeezenet.models.detector import DetectorConfig

    small = DetectorConfig("convdet", 2, v1_1_config(), image_size=64, extra_fire=FireSpec(16, 32, 32))
    weights = save_weights(model_from_config(small).eval(), tmp_path / "det.safetensors")
    result = bench(weights, yolo_folder(tmp_path / "boxes", n=12), tmp_path / "work", runtimes=["pytorch"],
                   repeats=1, alexnet=False, subprocesses=False)
    (row,) = result.rows
    assert (row.runtime, row.precision, result.images) == ("pytorch", "fp32", 12)
    assert row.top1 is None and row.latency_ms > 0 and row.agreement == 1.0 and row.snr_db > 60
    with pytest.raises(SqueezeNetError, match="a folder with no images"):
        bench(weights, tmp_path / "work", tmp_path / "work2", runtimes=["pytorch"], repeats=1, alexnet=False,
              subprocesses=False)


@pytest.mark.slow
def test_a_detector_exports_to_executorch_with_the_same_outputs(tmp_path) -> None:
    pytest.importorskip("executorch")
    from squeezenet.deploy.executorch import ExecuTorchModel, export_executorch
    from squeezenet.inference.detection import detect_images

    model = create_model("ssdlite_squeezenet", **{**TINY, "image_size": 128}).eval()
    check = export_executorch(model, tmp_path / "d.pte", check_images=torch.randn(2, 3, 128, 128))
    program = ExecuTorchModel(tmp_path / "d.pte")
    assert check.max_abs_diff < 1e-4 and program.meta.task == "detect" and program.meta.config.head == "ssdlite"
    image = [torch.randint(0, 256, (3, 90, 120), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))]
    ours, theirs = detect_images(model, image, threshold=0.0), detect_images(program, image, threshold=0.0)
    assert len(ours[0]["boxes"]) > 0
    torch.testing.assert_close(theirs[0]["boxes"], ours[0]["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(theirs[0]["scores"], ours[0]["scores"], atol=1e-5, rtol=0)


@pytest.mark.slow
def test_a_detector_trained_by_two_processes_under_torchrun_equals_one_process(tmp_path) -> None:
    """DDP on boxes: each process divides its loss by the matched anchors averaged over processes, so the two
    processes' averaged gradient is one process's gradient of the whole batch, step after step."""
    import os
    import subprocess
    import sys

    data = yolo_folder(tmp_path / "boxes", n=20)
    worker = Path(__file__).parent / "ddp_detect_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    results = {}
    for processes in (1, 2):
        out = tmp_path / f"out{processes}"
        out.mkdir()
        launch = [sys.executable] if processes == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                          "--nproc_per_node", "2"]
        done = subprocess.run([*launch, str(worker), str(out), str(tmp_path / f"run{processes}"), str(data)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        results[processes] = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(processes)]
    (alone,), (rank0, rank1) = results[1], results[2]
    gap = 0.0
    for key in alone:
        assert torch.equal(rank0[key], rank1[key]), key  # DDP keeps the ranks identical
        gap = max(gap, (rank0[key] - alone[key]).abs().max().item())
    assert gap < 1e-5, gap  # measured 6e-8; each process dividing by its own matched anchors: 0.03
    metrics = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["val_images"] == 4
