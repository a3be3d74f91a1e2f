"""Every GPU figure of issue #29 in one short run, against torchvision's ``squeezenet1_1`` measured in the same process.

A GPU is lent for minutes at a time, so this script is prepared and tested on CPU (``--smoke``: tiny sizes, the same
code paths; the test suite runs it) and gives, on CUDA, one table:

- training throughput (img/s) of ``squeezenet1_1`` at 224x224, batch 256: torchvision's eager model, ours eager, and
  ours with channels_last, bf16 autocast and ``torch.compile`` added one at a time;
- inference throughput at batch 1 and 256: eager, channels_last + bf16, compiled, and onnxruntime's CUDA provider
  when installed;
- CIFAR-10 to 90% test top-1 with the data held on the device (``--cifar FILE``, packed from ``../shared`` by
  ``--pack-cifar FILE``: one file that travels) and augmentation done there, no per-step host work;
- JPEG decoding: CPU (``torchvision.io.decode_jpeg``, one image at a time as a DataLoader worker does) against
  ``decode_jpeg(device="cuda")`` on a batch.

    python benchmarks/gpu.py --pack-cifar cifar10.npz          # here, before borrowing the GPU
    python benchmarks/gpu.py --cifar cifar10.npz [--json]      # on the GPU
    python benchmarks/gpu.py --smoke [--json]                  # anywhere, seconds
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

from squeezenet import create_model  # noqa: E402

SHARED = Path(os.environ.get("SQUEEZENET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
ANCHOR = "torchvision squeezenet1_1, eager"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(step: Callable[[], object], images: int, device: torch.device, seconds: float, warmup: int = 2) -> float:
    """Images per second of ``step`` (which handles ``images`` each call): the median of timed calls after warmup."""
    for _ in range(warmup):
        step()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while not times or (time.perf_counter() - start < seconds and len(times) < 50):
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    return images / statistics.median(times)


def _models(device: torch.device, channels_last: bool = False) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    tv = torchvision.models.squeezenet1_1().to(device)
    ours = create_model("squeezenet1_1").to(device)
    if channels_last:
        ours = ours.to(memory_format=torch.channels_last)
    return tv, ours


def training_rows(device: torch.device, batch: int, size: int, seconds: float, compile: bool) -> list[dict]:
    """Forward, cross-entropy, backward and an SGD step on one resident batch."""
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    dtype = torch.bfloat16

    def trainer(model: torch.nn.Module, autocast: bool, inputs: torch.Tensor) -> Callable[[], object]:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> object:
            with torch.autocast(device.type, dtype=dtype, enabled=autocast):
                loss = F.cross_entropy(model(inputs), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss
        return step

    tv, ours = _models(device)
    _, ours_cl = _models(device, channels_last=True)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    variants: list[tuple[str, Callable[[], object]]] = [
        (ANCHOR, trainer(tv.train(), False, x)),
        ("ours, eager", trainer(ours.train(), False, x)),
        ("ours, channels_last", trainer(ours_cl.train(), False, x_cl)),
        ("ours, channels_last + bf16", trainer(ours_cl.train(), True, x_cl)),
    ]
    if compile:
        variants.append(("ours, channels_last + bf16 + compile",
                         trainer(torch.compile(ours_cl).train(), True, x_cl)))  # type: ignore[arg-type]
    return [{"section": f"train b{batch} {size}px", "variant": name, "value": rate(fn, batch, device, seconds),
             "unit": "img/s"} for name, fn in variants]


def inference_rows(device: torch.device, batches: tuple[int, ...], size: int, seconds: float,
                   compile: bool) -> list[dict]:
    rows = []
    tv, ours = _models(device)
    _, ours_cl = _models(device, channels_last=True)
    tv.eval(), ours.eval(), ours_cl.eval()
    compiled = torch.compile(ours_cl) if compile else None
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=device)
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def run(model: Callable, inputs: torch.Tensor, bf16: bool) -> Callable[[], object]:
            def step() -> object:
                with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    return model(inputs)
            return step

        variants = [(ANCHOR, run(tv, x, False)), ("ours, eager", run(ours, x, False)),
                    ("ours, channels_last + bf16", run(ours_cl, x_cl, True))]
        if compiled is not None:
            variants.append(("ours, channels_last + bf16 + compile", run(compiled, x_cl, True)))
        variants += _onnxruntime_cuda(ours, x)
        rows += [{"section": f"inference b{batch} {size}px", "variant": name, "value": rate(fn, batch, device, seconds),
                  "unit": "img/s"} for name, fn in variants]
    return rows


def _onnxruntime_cuda(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[str, Callable[[], object]]]:
    """onnxruntime's CUDA provider on our ONNX export, when this machine has both."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    if x.device.type != "cuda" or "CUDAExecutionProvider" not in ort.get_available_providers():
        return []
    import tempfile

    from squeezenet.deploy import export_onnx

    path = Path(tempfile.mkdtemp()) / "m.onnx"
    export_onnx(model.cpu().eval(), path, check_images=x[:2].cpu())  # type: ignore[arg-type]
    model.to(x.device)
    session = ort.InferenceSession(str(path), providers=["CUDAExecutionProvider"])
    binding = session.io_binding()
    data = x.contiguous()
    binding.bind_input("image", "cuda", 0, np.float32, list(data.shape), data.data_ptr())
    binding.bind_output("logits", "cuda")
    return [("onnxruntime CUDA provider (fp32, io binding)", lambda: session.run_with_iobinding(binding))]


def jpeg_rows(device: torch.device, images: int, seconds: float) -> list[dict]:
    """Decode the same JPEGs on the CPU (one at a time, as each DataLoader worker does) and, on CUDA, in a batch."""
    from torchvision.io import decode_jpeg, encode_jpeg, read_file

    files = sorted((SHARED / "imagenet-samples").glob("*.JPEG"))[:images]
    if files:
        data = [read_file(str(f)) for f in files]
    else:  # (no shared data: JPEGs made here)
        g = torch.Generator().manual_seed(0)
        data = [encode_jpeg(torch.randint(0, 256, (3, 375, 500), dtype=torch.uint8, generator=g)) for _ in range(images)]
    rows = [{"section": f"JPEG decode ({len(data)} ImageNet-size images)", "variant": "CPU, one thread, one at a time",
             "value": rate(lambda: [decode_jpeg(d) for d in data], len(data), torch.device("cpu"), seconds),
             "unit": "img/s"}]
    if device.type == "cuda":
        rows.append({"section": rows[0]["section"], "variant": "decode_jpeg(device='cuda'), batched",
                     "value": rate(lambda: decode_jpeg(data, device="cuda"), len(data), device, seconds),
                     "unit": "img/s"})
    return rows


def pack_cifar(out: Path) -> None:
    """CIFAR-10's JPEG folders under ../shared as one compressed .npz of uint8 arrays (it travels to a GPU)."""
    from squeezenet.data.images import load_rgb_image

    root = SHARED / "cifar10"
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
        images, labels = [], []
        for k, name in enumerate(classes):
            for f in sorted((root / split / name).iterdir()):
                images.append(load_rgb_image(f).numpy())
                labels.append(k)
        arrays[f"{split}_x"], arrays[f"{split}_y"] = np.stack(images), np.array(labels, dtype=np.int64)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out}: {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}")


def cifar_rows(device: torch.device, packed: Path | None, smoke: bool, target: float = 0.90,
               limit_s: float = 120.0) -> list[dict]:
    """``squeezenet1_1_cifar`` (batch-norm) trained with the data resident on the device: pad-crop and flip done
    there, a one-cycle SGD schedule; the time until the test top-1 first reaches ``target`` (checked each epoch)."""
    if packed is not None:
        d = np.load(packed)
        train_x, train_y = torch.from_numpy(d["train_x"]), torch.from_numpy(d["train_y"])
        test_x, test_y = torch.from_numpy(d["test_x"]), torch.from_numpy(d["test_y"])
    elif smoke:  # the loop, on random data
        g = torch.Generator().manual_seed(0)
        train_x, train_y = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(64) % 10
        test_x, test_y = train_x[:32], train_y[:32]
    else:
        return [{"section": "CIFAR-10 to 90%", "variant": "skipped: no --cifar FILE", "value": 0.0, "unit": "s"}]
    mean = torch.tensor([0.4914, 0.4822, 0.4465], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616], device=device).view(1, 3, 1, 1)
    train_x, train_y, test_x, test_y = (t.to(device) for t in (train_x, train_y, test_x, test_y))
    torch.manual_seed(0)
    model = create_model("squeezenet1_1_cifar", batch_norm=True).to(device).to(memory_format=torch.channels_last)
    batch = 512 if not smoke else 16
    epochs = 30 if not smoke else 1
    steps = epochs * (len(train_x) // batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.4, total_steps=max(steps, 8), pct_start=0.25)

    def augment(x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.float(), (4, 4, 4, 4), mode="reflect")
        i, j = torch.randint(0, 9, (2,), device=device)  # one offset per batch: no per-image host work
        x = x[:, :, i:i + 32, j:j + 32]
        flip = torch.rand(len(x), device=device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return ((x / 255 - mean) / std).contiguous(memory_format=torch.channels_last)

    def accuracy() -> float:
        model.eval()
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            hits = sum(int((model(((test_x[i:i + 1000].float() / 255 - mean) / std).contiguous(
                memory_format=torch.channels_last)).argmax(1) == test_y[i:i + 1000]).sum())
                for i in range(0, len(test_x), 1000))
        model.train()
        return hits / len(test_x)

    _sync(device)
    start, reached, top1 = time.perf_counter(), None, 0.0
    for _ in range(epochs):
        order = torch.randperm(len(train_x), device=device)
        for s in range(len(train_x) // batch):
            idx = order[s * batch:(s + 1) * batch]
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(augment(train_x[idx])), train_y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        top1 = accuracy()
        if top1 >= target and reached is None:
            reached = time.perf_counter() - start
            break
        if time.perf_counter() - start > limit_s:
            break
    _sync(device)
    elapsed = time.perf_counter() - start
    return [{"section": f"CIFAR-10 to {target:.0%} test top-1", "variant": f"data on {device.type}, bf16, batch {batch}",
             "value": reached if reached is not None else elapsed, "unit": "s",
             "note": f"top-1 {top1:.4f}" + ("" if reached is not None else " (target not reached)")}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device: checks every path in seconds")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cifar", type=Path, help="CIFAR-10 packed by --pack-cifar")
    parser.add_argument("--pack-cifar", type=Path, metavar="FILE", help="pack ../shared's CIFAR-10 into FILE and stop")
    parser.add_argument("--seconds", type=float, help="time per measurement (default 3; smoke 0.2)")
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (default out on CPU)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.pack_cifar:
        pack_cifar(args.pack_cifar)
        return 0
    device = torch.device(args.device)
    smoke = args.smoke
    seconds = args.seconds or (0.2 if smoke else 3.0)
    compile = device.type == "cuda" and not args.no_compile
    torch.backends.cudnn.benchmark = True
    rows = training_rows(device, 8 if smoke else 256, 64 if smoke else 224, seconds, compile)
    rows += inference_rows(device, (1, 8) if smoke else (1, 256), 64 if smoke else 224, seconds, compile)
    rows += cifar_rows(device, args.cifar, smoke)
    rows += jpeg_rows(device, 8 if smoke else 64, seconds)
    anchors = {r["section"]: r["value"] for r in rows if r["variant"] == ANCHOR}
    for r in rows:
        anchor = anchors.get(r["section"])
        r["vs_anchor"] = r["value"] / anchor if anchor else None
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} threads)"
    if args.json:
        print(json.dumps({"device": card, "torch": torch.__version__, "smoke": smoke, "rows": rows}, indent=1))
        return 0
    print(f"{card}, torch {torch.__version__}{' (smoke: tiny sizes)' if smoke else ''}")
    print(f"{'section':34s} {'variant':46s} {'value':>12s}  {'unit':5s} vs anchor")
    for r in rows:
        ratio = f"{r['vs_anchor']:.2f}x" if r["vs_anchor"] else ""
        print(f"{r['section']:34s} {r['variant']:46s} {r['value']:12,.1f}  {r['unit']:5s} {ratio} {r.get('note', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
