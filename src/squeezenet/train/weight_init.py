"""Weight initialisation schemes a recipe can ask for."""

from __future__ import annotations

import math

from torch import nn

from ..errors import SqueezeNetError
from ..models import Network


def init_head_bias(model: Network, value: float) -> None:
    """Start the classifier's bias at ``value``.

    SqueezeNet ends in conv10 -> ReLU -> average pool, so a class logit that goes negative for every
    input has zero gradient and never recovers. With the usual N(0, 0.01) conv10 and zero bias the
    logits start at about 0 and each class is the wrong one for ~90% of samples, whose gradient pushes
    it down: within a few dozen large-LR steps every unit is dead and the loss sits at ln(num_classes).
    Softmax gradients sum to zero over classes, so while all units are alive the mean bias is
    conserved: a positive start keeps the units in the ReLU's linear range while the features form.
    """
    head = model.get_classifier()
    if head is not None and head.bias is not None:
        nn.init.constant_(head.bias, value)


def init_weights(model: Network, scheme: str) -> None:
    """``torchvision``: leave the model's own init (kaiming-uniform convs, conv10 N(0, 0.01)).
    ``caffe``: the paper's Caffe fillers, xavier (uniform +-sqrt(3 / fan_in)) for every conv and N(0, 0.01)
    for conv10, zero biases. ``msra``: kaiming-normal (fan_out, ReLU gain), conv10 N(0, 0.01).
    """
    if scheme == "torchvision":
        return
    if scheme not in ("caffe", "msra"):
        raise SqueezeNetError(f"unknown init scheme {scheme!r}; choose torchvision, caffe or msra")
    head = model.get_classifier()
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if m is head:
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif scheme == "caffe":
                fan_in = m.weight[0].numel()
                bound = math.sqrt(3.0 / fan_in)
                nn.init.uniform_(m.weight, -bound, bound)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
