"""PT2E int8 (ExecuTorch's and LiteRT's quantizers) with the classifier's logits kept float.

The stock recipes quantize every activation, the last one included: the global average pool's output, which is the
logits. 256 levels over the logits' whole range are coarser than the margin between the top two classes on many
images: on the published model that alone took top-1 agreement with fp32 from 0.952 to 0.840 (held-out samples;
``benchmarks/pt2e_int8.py``). Averaging the last convolution's int8 output over 13 x 13 positions already cancels most
of its rounding; re-quantizing the average throws that away. So the nodes from the pooling to the output keep no
quantization annotation: the last convolution still runs in int8, the pool (1000 x 169 additions) in float.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models import Network

#: the ops of a classifier's head after its last convolution (pooling, then reshaping to N x classes)
HEAD_OPS = ("adaptive_avg_pool2d", "avg_pool2d", "mean", "flatten", "view", "reshape", "squeeze")


def int8_weights_of(model: Network, calibration: torch.Tensor, int8_weights: str) -> Network:
    """The network PT2E quantizes: ``model`` itself (``"nearest"``: the quantizer rounds each weight) or, by default
    (``"gptq"``), with its convolution weights already on the per-channel int8 grid, each rounding chosen by GPTQ to
    keep the layer's output on ``calibration`` (:func:`squeezenet.deploy.int8.gptq_int8_weights`, as for ONNX). The
    quantizers' symmetric per-channel observers (scale max|w| / 127) then find those integers exactly. On the
    published model, with float logits: held-out agreement 0.928 -> 0.952 for ExecuTorch (KL 0.0185 -> 0.0123)."""
    from ..errors import SqueezeNetError
    from .int8 import gptq_int8_weights

    if int8_weights not in ("gptq", "nearest"):
        raise SqueezeNetError(f"int8_weights={int8_weights!r}: choose gptq or nearest")
    return gptq_int8_weights(model, calibration) if int8_weights == "gptq" else model


def float_logits(quantizer: Any) -> Any:
    """``quantizer`` (a torchao PT2E ``Quantizer``) that leaves the head after the last convolution float."""
    from torchao.quantization.pt2e.quantizer import Quantizer

    class FloatLogits(Quantizer):
        def __init__(self, inner: Quantizer):
            super().__init__()
            self.inner = inner

        def transform_for_annotation(self, model):
            return self.inner.transform_for_annotation(model)

        def annotate(self, model):
            self.inner.annotate(model)
            nodes = list(model.graph.nodes)
            convs = [i for i, n in enumerate(nodes) if n.op == "call_function" and "conv" in str(n.target)]
            for node in nodes[convs[-1] + 1:] if convs else []:
                if node.op == "call_function" and any(op in str(node.target) for op in HEAD_OPS):
                    node.meta.pop("quantization_annotation", None)
            return model

        def validate(self, model) -> None:
            self.inner.validate(model)

    return FloatLogits(quantizer)


def calibrated(model: Network, example: torch.Tensor, calibration: torch.Tensor, quantizer: Any) -> Any:
    """``model`` captured at ``example``'s shape and prepared by ``float_logits(quantizer)``, its observers run over
    ``calibration`` in batches of that shape (the captured graph takes no other): ready for ``convert_pt2e``."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), float_logits(quantizer))
    n = len(example)
    with torch.no_grad():
        for start in range(0, len(calibration) - n + 1, n):
            prepared(calibration[start:start + n])
    return prepared
