"""COCO segmentations as masks: run-length counts decoded as pycocotools decodes them, polygons filled as its
rasteriser fills them, crowds ignored, and malformed counts refused (pycocotools' C decoder would write past its
buffer) with one line naming the file and the annotation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from squeezenet.data.masks import IGNORE_INDEX, draw_mask, read_mask_folder
from squeezenet.data.regions import Region, coco_region, rle_counts
from squeezenet.errors import SqueezeNetError

H, W = 48, 80


def _blobs(seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    m = np.zeros((H, W), np.uint8)
    for _ in range(4):
        y, x = g.integers(0, H - 10), g.integers(0, W - 10)
        m[y:y + g.integers(3, 12), x:x + g.integers(3, 20)] = 1
    return m


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_run_length_counts_decode_as_pycocotools_decodes_them(seed) -> None:
    truth = _blobs(seed)
    encoded = coco_mask.encode(np.asfortranarray(truth))  # compressed counts, as COCO files hold them
    compressed = {"size": [H, W], "counts": encoded["counts"].decode()}
    region = coco_region(compressed, W, H, False, "t")
    canvas = Image.new("L", (W, H), 0)
    region.draw(canvas, 7)
    assert np.array_equal(np.asarray(canvas), truth * 7)
    assert region.area() == pytest.approx(truth.mean())
    plain = list(region.counts)  # the uncompressed list form of the same mask (crowds in instances_*.json)
    assert coco_region({"size": [H, W], "counts": plain}, W, H, True, "t").counts == region.counts
    assert np.array_equal(coco_mask.decode(coco_mask.frPyObjects({"size": [H, W], "counts": plain}, H, W)), truth)


@pytest.mark.parametrize("counts, words", [
    ([10, 20], "cover 30 pixels, not the 80x48 = 3,840"),
    ([-5, 3845], "a negative run length"),
    ("0`", "end inside a number"),
    ("0~ ", "not a compressed run-length character"),
    ("o" * 14, "too large"),
    ([1.5, 3838.5], "a list of whole numbers"),
])
def test_malformed_run_length_counts_are_one_line(counts, words) -> None:
    with pytest.raises(SqueezeNetError, match=words) as caught:
        rle_counts(counts, (H, W), "ann.json: annotation 3")
    assert str(caught.value).startswith("ann.json: annotation 3: ") and "\n" not in str(caught.value)


def _coco_folder(root: Path) -> tuple[Path, list[float], np.ndarray]:
    (root / "images").mkdir(parents=True)
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(root / "images" / "b.png")
    triangle = [10.0, 40.0, 40.0, 5.0, 70.0, 40.0]
    crowd = _blobs(5)
    crowd[:, :5] = 1  # a crowd overlapping nothing else on the left edge
    rle = coco_mask.encode(np.asfortranarray(crowd))
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 5, 60, 35], "segmentation": [triangle], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 80, 48],
         "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}, "iscrowd": 1},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 20],
         "segmentation": [[0, 0, 20, 0, 20, 20, 0, 20], [30, 30, 40, 30, 40, 40]], "iscrowd": 0},
    ]
    (root / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                   {"id": 2, "file_name": "b.png", "width": W, "height": H}],
        "annotations": annotations, "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}))
    return root, triangle, crowd


def test_a_coco_folder_gives_masks_from_polygons_and_run_lengths_crowds_ignored(tmp_path) -> None:
    root, triangle, crowd = _coco_folder(tmp_path / "coco")
    masks = read_mask_folder(root)
    assert masks.classes == ["background", "person", "car"]
    first = draw_mask(masks.samples[0], (H, W), 3).numpy()
    car = coco_mask.decode(coco_mask.frPyObjects([triangle], H, W))[..., 0]  # pycocotools' own rasterisation
    outside_crowd = crowd == 0
    agree = ((first == 2) == (car == 1))[outside_crowd].mean()
    assert agree > 0.995, agree  # drawn by pycocotools too, from coordinates stored as fractions of the image
    smaller_in_front = car.sum() < crowd.sum()  # larger regions first: the smaller one is drawn over the other
    expected_crowd = (crowd == 1) & ~((car == 1) & smaller_in_front)
    assert ((first == IGNORE_INDEX) == expected_crowd).mean() > 0.98
    second = draw_mask(masks.samples[1], (H, W), 3)  # two polygons of one object, both filled
    assert int((second == 1).sum()) == pytest.approx(20 * 20 + 50, abs=15) and second[35, 38] == 1
    people = masks.only(["person"])  # a selection keeps the crowd of its class
    assert (draw_mask(people.samples[0], (H, W), 2).numpy() == IGNORE_INDEX).any()
    assert not (draw_mask(masks.only(["car"]).samples[0], (H, W), 2).numpy() == IGNORE_INDEX).any()


def test_a_run_length_mask_of_another_size_than_its_image_is_one_line(tmp_path) -> None:
    root, _, _ = _coco_folder(tmp_path / "coco")
    data = json.loads((root / "annotations.json").read_text())
    data["annotations"][1]["segmentation"]["size"] = [H, W + 1]
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(SqueezeNetError, match=r"annotations\.json: annotation 1: a run-length mask of 81x48 for a 80x48"):
        read_mask_folder(root)
    data["annotations"][1]["segmentation"] = {"size": [H, W], "counts": "0`"}
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(SqueezeNetError, match=r"annotation 1: compressed run-length counts end inside a number"):
        read_mask_folder(root)
    data["annotations"][1]["segmentation"] = [[1, 2, 3]]
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(SqueezeNetError, match=r"annotation 1: a polygon needs an even count of at least 6"):
        read_mask_folder(root)
    image = Region(counts=(W * H,), size=(H, W))  # an image whose file is not the size its JSON says
    with pytest.raises(SqueezeNetError, match="a run-length mask of 80x48 for a 40x48 image"):
        image.draw(Image.new("L", (40, H)), 1)
