"""Why PT2E int8 (ExecuTorch's and LiteRT's recipe) keeps fewer answers than the ONNX int8 file: variants of the
recipe on the published model, each judged paired against fp32 on held-out images.

PT2E's converted graph (quantize/dequantize pairs around float ops) is run in PyTorch: it gives the lowered
programs' agreement (0.840 for both ExecuTorch and LiteRT on the 250 samples) in seconds instead of a lowering
per variant. Calibration on ``imagenet-calib``, measurement on ``imagenet-samples`` (never tuned on).

    python benchmarks/pt2e_int8.py [--calibration-images 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")

import torch  # noqa: E402

from squeezenet.common.cpu import cpu_model  # noqa: E402
from squeezenet.deploy.int8 import gptq_int8_weights, mse_range  # noqa: E402
from squeezenet.deploy.pt2e import float_logits  # noqa: E402
from squeezenet.inference.fidelity import fidelity  # noqa: E402
from squeezenet.inference.preloaded import load_images, unlabelled_images  # noqa: E402
from squeezenet.weights import load_weights  # noqa: E402

SHARED = Path(os.environ.get("SQUEEZENET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.observer import HistogramObserver, MinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import Quantizer

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calibration-images", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(2)
    model = load_weights(SHARED / "deep-compression" / "compressed_SqueezeNet.net").eval()
    calib = unlabelled_images(model.meta, SHARED / "imagenet-calib", args.calibration_images)
    held = load_images(model, SHARED / "imagenet-samples")[0]
    with torch.no_grad():
        reference = model(held)
    example = torch.zeros(1, 3, 227, 227)

    class Unannotated(Quantizer):
        """LiteRT's quantizer, then the annotations of some nodes removed: they stay float."""

        def __init__(self, inner: Quantizer, modules=(), ops=()):
            super().__init__()
            self.inner, self.modules, self.ops = inner, set(modules), tuple(ops)

        def transform_for_annotation(self, graph):
            return self.inner.transform_for_annotation(graph)

        def annotate(self, graph):
            self.inner.annotate(graph)
            for node in graph.graph.nodes:
                paths = {v[0] for v in (node.meta.get("nn_module_stack") or {}).values()}
                if paths & self.modules or (node.op == "call_function" and any(o in str(node.target) for o in self.ops)):
                    node.meta.pop("quantization_annotation", None)
            return graph

        def validate(self, graph) -> None:
            pass

    class MSEObserver(HistogramObserver):
        """The ONNX path's range rule (least squared rounding error over clip points) on the observer's histogram."""

        def _non_linear_param_search(self):
            lo, hi = float(self.min_val), float(self.max_val)
            if not hi > lo:
                return self.min_val, self.max_val
            n = self.histogram.numel()
            centres = lo + (torch.arange(n, dtype=torch.float64) + 0.5) * (hi - lo) / n
            low, high = mse_range(centres[None], counts=self.histogram.double()[None])
            return torch.tensor(low.item()), torch.tensor(high.item())

    base = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)

    def observed(observer):
        spec = lambda s: dataclasses.replace(s, observer_or_fake_quant_ctr=observer.with_args(eps=2**-12))
        return dataclasses.replace(base, input_activation=spec(base.input_activation),
                                   output_activation=spec(base.output_activation))

    def measure(label: str, config=base, net=model, modules=(), ops=(), logits_float: bool = False,
                xnnpack: bool = False) -> None:
        if xnnpack:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                get_symmetric_quantization_config as xnnpack_config,
            )

            inner = XNNPACKQuantizer().set_global(xnnpack_config(is_per_channel=True))
        else:
            inner = PT2EQuantizer().set_global(config)
        quantizer = Unannotated(float_logits(inner) if logits_float else inner, modules, ops)
        prepared = prepare_pt2e(torch.export.export(net, (example,)).module(), quantizer)
        with torch.no_grad():
            for image in calib:
                prepared(image[None])
            converted = convert_pt2e(prepared)
            got = torch.cat([converted(image[None]) for image in held])
        f = fidelity(reference, got)
        print(f"| {label} | {f.agreement:.3f} | {f.kl:.4f} | {f.snr_db:.1f} |", flush=True)

    print(f"{cpu_model()}; {len(calib)} calibration images, {len(held)} held-out samples\n")
    print("| PT2E variant | agreement | KL | logit SNR dB |\n|---|---|---|---|")
    measure("LiteRT/XNNPACK recipe (per-channel weights, histogram activations)")
    measure("first and last convolution float", modules=("features.0", "classifier.1"))
    measure("concatenations unannotated", ops=("cat",))
    measure("MSE clip ranges on the histograms", observed(MSEObserver))
    measure("min/max activation ranges", observed(MinMaxObserver))
    measure("MSE ranges + GPTQ-rounded weights", observed(MSEObserver), gptq_int8_weights(model, calib[:64]))
    gptq = gptq_int8_weights(model, calib[:64])
    measure("**float logits** (the head after the last convolution unquantized: what export does)", logits_float=True)
    measure("float logits, ExecuTorch's XNNPACKQuantizer", logits_float=True, xnnpack=True)
    measure("float logits + GPTQ-rounded weights", net=gptq, logits_float=True)
    measure("float logits + MSE clip ranges", observed(MSEObserver), logits_float=True)
    measure("float logits + first convolution float", modules=("features.0",), logits_float=True)


if __name__ == "__main__":
    main()
