"""Inference-time folding of BatchNorm into the convolution before it."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_conv_bn(model, example=None, atol=1e-3):
    """An eval-mode copy of `model` with every BatchNorm2d folded into its preceding Conv2d.

    "Preceding" means registered just before it in the same parent, which is how HRNet and
    ResNet blocks are written (conv1, bn1 / Sequential(conv, bn, relu)). When `example` (an
    input tensor) is given, the copy is checked against the original and the original is
    returned if they differ by more than `atol`, so a model written another way stays correct.
    """
    fused = copy.deepcopy(model).eval()
    count = _fold(fused)
    if count == 0:
        return model.eval()
    if example is not None:
        with torch.inference_mode():
            expected, actual = model.eval()(example), fused(example)
        pairs = (zip(expected.values(), actual.values()) if isinstance(expected, dict)
                 else [(expected, actual)])
        # Relative to each output's scale: folding changes rounding, not the function.
        if not all(float((a - b).abs().max()) <= atol * (1.0 + float(b.abs().max()))
                   for a, b in pairs if a.is_floating_point()):
            return model.eval()
    return fused


def _fold(module):
    count = 0
    names = list(module._modules)
    for previous, name in zip([None] + names[:-1], names):
        child = module._modules[name]
        before = module._modules.get(previous) if previous is not None else None
        if (isinstance(child, nn.BatchNorm2d) and isinstance(before, nn.Conv2d)
                and before.out_channels == child.num_features):
            module._modules[previous] = fuse_conv_bn_eval(before, child)
            module._modules[name] = nn.Identity()
            count += 1
        elif child is not None:
            count += _fold(child)
    return count
