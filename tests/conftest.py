from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(os.environ.get("SQUEEZENET_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from seed 0 and leaves torch's thread count as it found it (verbs run in-process set it:
    a worker left at 2 threads on 2 cores would oversubscribe the machine for every later test)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def require_shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's ../shared data); absent on this machine")
    return path


def image_folder(folder: Path, n: int, size: tuple[int, int] = (40, 40)) -> Path:
    """A folder of ``n`` random-pixel PNGs (unlabelled calibration images)."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def cifar_test_model(folder: Path):
    """The deploy tests' network (random init, batch norm, CIFAR-sized, classes c0..c9), saved in ``folder`` as
    ``cifar.safetensors`` and loaded back as a user's file would be."""
    from squeezenet.models import create_model
    from squeezenet.weights import Preprocessing, load_weights, save_weights

    torch.manual_seed(0)
    model = create_model("squeezenet1_1_cifar", batch_norm=True, stem_pool=True).eval()
    model.meta = model.meta.replace(classes=[f"c{i}" for i in range(10)])
    model.meta = model.meta.replace(preprocessing=Preprocessing("cifar", resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3))
    save_weights(model, folder / "cifar.safetensors")
    return load_weights(folder / "cifar.safetensors").eval()


@pytest.fixture(scope="session")
def cifar_onnx(tmp_path_factory) -> Path:
    """:func:`cifar_test_model` exported once to fp32 ONNX (``cifar.onnx`` beside ``cifar.safetensors``) for the
    tests that read such a file; an export is ~5 s of torch.export on this machine. Tests that change the file copy
    it first."""
    from squeezenet.deploy import export_onnx

    folder = tmp_path_factory.mktemp("cifar-onnx")
    model = cifar_test_model(folder)
    export_onnx(model, folder / "cifar.onnx", check_images=torch.rand(4, 3, 32, 32))
    return folder / "cifar.onnx"


def patterns(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class (0..9) is a bright square at one of ten places on noise: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    x = 0.5 * torch.randn(n, 3, 32, 32, generator=g)
    for i, k in enumerate(labels.tolist()):
        row, col = divmod(k, 5)
        x[i, k % 3, 4 + 14 * row:14 + 14 * row, 1 + 6 * col:7 + 6 * col] += 2.5
    return x, labels


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """The test network after 60 SGD steps on :func:`patterns`: its answers follow the input, as a trained
    model's do (a random network answers one class for nearly every input, whatever int8 does to it)."""
    folder = tmp_path_factory.mktemp("trained")
    model = cifar_test_model(folder).train()
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = patterns(960, seed=5)
    for step in range(60):
        batch = slice(16 * step, 16 * step + 16)
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    from squeezenet.weights import save_weights

    save_weights(model.eval(), folder / "trained.safetensors")
    return folder / "trained.safetensors"


def pytest_collection_modifyitems(items: list) -> None:
    """Tests marked ``slow`` run first. pytest-xdist hands tests out in collection order, so a minute-long test
    collected last ran alone at the end while the other worker idled (350 of 806 s, measured)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
