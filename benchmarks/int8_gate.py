"""Which measure tells a faithful int8 file from a broken one, on any model? (issue #24)

Top-1 agreement alone is blind when the reference answers one class for (nearly) every input: a randomly
initialised network does, and so does a badly trained one; agreement is then 1.000 whatever the candidate
computes. This script writes int8 ONNX files that are faithful (the defaults: GPTQ weights + MSE ranges; and
nearest weights + minmax ranges) and files that are broken (calibrated with one image 1000x brighter than the
others, which leaves the other images no resolution; calibrated on blank images, which clips everything) for
three models of very different kinds:

- the published Deep Compression SqueezeNet (ImageNet, trained, 1000 classes);
- a CIFAR-10 ``squeezenet1_1_cifar`` trained by ``squeezenet train`` (``--cifar RUN/best.safetensors``);
- torchvision's ``squeezenet1_1`` as initialised (random weights, 1000 classes): its answers barely vary;
- the random CIFAR network of the test suite (batch-norm, 10 classes): the case that passed the old gate.

Each file is measured against its fp32 model on held-out images (ImageNet samples; 500 CIFAR test images), never
on the calibration images, with every candidate measure (``squeezenet.inference.fidelity``):
agreement, KL, logit SNR and the reference's number of distinct answers.

    python benchmarks/int8_gate.py [--cifar RUN/best.safetensors] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from squeezenet.common.cpu import cpu_model  # noqa: E402
from squeezenet.data import load_rgb_image  # noqa: E402
from squeezenet.deploy import export_onnx  # noqa: E402
from squeezenet.deploy.ort import ort_session, run_onnx  # noqa: E402
from squeezenet.inference.fidelity import FidelityGate, fidelity  # noqa: E402
from squeezenet.inference.preloaded import unlabelled_images  # noqa: E402
from squeezenet.models import create_model  # noqa: E402
from squeezenet.weights import Preprocessing, load_weights  # noqa: E402

SHARED = Path(os.environ.get("SQUEEZENET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def cifar_images(meta, split: str, per_class: int, offset: int = 0) -> torch.Tensor:
    root = SHARED / "cifar10" / split
    transform = meta.preprocessing.transforms()
    paths = [p for c in sorted(root.iterdir()) for p in sorted(c.iterdir())[offset:offset + per_class]]
    return torch.stack([transform(load_rgb_image(p)) for p in paths])


def variants(calibration: torch.Tensor) -> dict[str, dict]:
    outlier = calibration.clone()
    outlier[0] *= 1000
    blank = torch.zeros_like(calibration) + 0.01 * torch.randn(calibration.shape, generator=torch.Generator().manual_seed(0))
    return {
        "faithful gptq+mse": {"calibration": calibration},
        "faithful nearest+minmax": {"calibration": calibration, "calibration_method": "minmax", "int8_weights": "nearest"},
        "broken: outlier calibration": {"calibration": outlier, "calibration_method": "minmax", "int8_weights": "nearest"},
        "broken: blank calibration": {"calibration": blank, "calibration_method": "minmax", "int8_weights": "nearest"},
    }


def measure(name: str, model, calibration: torch.Tensor, held_out: torch.Tensor, tmp: Path) -> list[dict]:
    with torch.inference_mode():
        reference = torch.cat([model(held_out[i:i + 50]) for i in range(0, len(held_out), 50)])
    rows = []
    for label, options in variants(calibration).items():
        path = tmp / f"{name}-{len(rows)}.onnx"
        gate = export_onnx(model, path, check_images=held_out[:4], int8=True, gate=FidelityGate(0.0, -300.0), force=True,
                           **options).int8
        assert gate is not None
        got = torch.from_numpy(run_onnx(ort_session(path), held_out))
        f = fidelity(reference, got)
        rows.append({"model": name, "file": label, **f.to_dict(),
                     "gate_view": {"agreement": gate.agreement, "snr_db": gate.snr_db, "kl": gate.kl}})
        print(f"{name:26s} {label:28s} held-out: agree {f.agreement:.3f}  KL {f.kl:7.4f}  SNR {f.snr_db:6.1f} dB  "
              f"ref classes {f.reference_classes:4d} (top {f.reference_top_share:.2f})   calibration: agree "
              f"{gate.agreement:.3f}  SNR {gate.snr_db:6.1f} dB", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", type=Path, help="a trained CIFAR-10 model file (squeezenet train's best.safetensors)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"CPU: {cpu_model()}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        published = load_weights(SHARED / "deep-compression" / "compressed_SqueezeNet.net").eval()
        calib = unlabelled_images(published.meta, SHARED / "imagenet-calib")
        held = unlabelled_images(published.meta, SHARED / "imagenet-samples")
        rows += measure("published DC (ImageNet)", published, calib, held, Path(tmp))

        torch.manual_seed(0)
        init = create_model("squeezenet1_1").eval()
        calib = unlabelled_images(init.meta, SHARED / "imagenet-calib")
        held = unlabelled_images(init.meta, SHARED / "imagenet-samples")
        rows += measure("torchvision-init 1_1", init, calib, held, Path(tmp))

        torch.manual_seed(0)
        rand = create_model("squeezenet1_1_cifar", batch_norm=True, stem_pool=True).eval()
        rand.meta = rand.meta.replace(preprocessing=Preprocessing("cifar", resize=32, crop=32, mean=(0.5,) * 3, std=(0.25,) * 3))
        rows += measure("random CIFAR (test suite)", rand, cifar_images(rand.meta, "train", 25),
                        cifar_images(rand.meta, "test", 50), Path(tmp))
        if args.cifar:
            trained = load_weights(args.cifar).eval()
            rows += measure("trained CIFAR", trained, cifar_images(trained.meta, "train", 25),
                            cifar_images(trained.meta, "test", 50), Path(tmp))
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
