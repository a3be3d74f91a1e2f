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
