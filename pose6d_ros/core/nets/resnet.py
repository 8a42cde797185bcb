"""ResNet-18/34/50 in plain PyTorch with torchvision's module names, returning C3, C4, C5.

The state-dict layout is torchvision's (`conv1`, `bn1`, `layer1`..`layer4`, blocks with
`conv1/bn1/conv2/bn2[/conv3/bn3]` and `downsample.0/.1`; the stride of a bottleneck sits on its
3x3 conv, "ResNet v1.5"), so a torchvision ImageNet checkpoint that a user has on disk
(`resnet18-f37072fd.pth`, ...) loads without any key mapping (`pretrained.load_pretrained`).
There is no `avgpool`/`fc`: a detector has no use for them, and `fc.*` is left out.

`max_pool=False` is Zhang et al.'s "ResNet-h": the stem's 3x3 stride-2 max-pool is removed, so
every later stage keeps twice the resolution. Output strides (C3, C4, C5):

- ResNet   : 8, 16, 32
- ResNet-h : 4,  8, 16   (the paper: "the output of ResNet-h Stage 3 has strides of 4")

Removing a parameter-free layer leaves the state dict unchanged, so ImageNet weights load into
ResNet-h as well. `width` scales every stage (64 = the real network, which ImageNet weights
need); small widths give the tiny models the tests use.

Every stride-2 layer maps n pixels to ceil(n / 2) (`feature_size`), so odd input sizes work.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pose6d_ros.core.errors import Pose6dError

# depth -> (block type, blocks per stage)
DEPTHS = {18: ('basic', (2, 2, 2, 2)), 34: ('basic', (3, 4, 6, 3)),
          50: ('bottleneck', (3, 4, 6, 3))}


def conv3x3(in_channels, out_channels, stride=1):
    """3x3 convolution with padding 1 and no bias (a BN follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels, out_channels, stride=1):
    """1x1 convolution without bias (a BN follows)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4; shortcut as in BasicBlock."""

    expansion = 4

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv1x1(channels, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def feature_size(n: int, num_halvings: int) -> int:
    """Size after `num_halvings` stride-2 layers (k3/p1, k7/p3 and k1/p0 all give ceil(n/2))."""
    for _ in range(num_halvings):
        n = math.ceil(n / 2)
    return n


class ResNet(nn.Module):
    """ResNet backbone: (B, 3, H, W) -> [C3, C4, C5] (the outputs of layer2, layer3, layer4)."""

    def __init__(self, depth: int = 50, max_pool: bool = True, width: int = 64):
        super().__init__()
        if depth not in DEPTHS:
            raise Pose6dError(f'ResNet depth must be one of {sorted(DEPTHS)}, got {depth}')
        if width < 1:
            raise Pose6dError(f'ResNet width must be >= 1, got {width}')
        kind, blocks = DEPTHS[depth]
        block = BasicBlock if kind == 'basic' else Bottleneck
        self.depth, self.max_pool, self.width = depth, bool(max_pool), int(width)
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        # Identity keeps the module name and the state dict of the plain ResNet.
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if max_pool else nn.Identity()
        self._in_channels = width
        self.layer1 = self._make_layer(block, width, blocks[0], 1)
        self.layer2 = self._make_layer(block, width * 2, blocks[1], 2)
        self.layer3 = self._make_layer(block, width * 4, blocks[2], 2)
        self.layer4 = self._make_layer(block, width * 8, blocks[3], 2)
        self.out_channels = tuple(width * m * block.expansion for m in (2, 4, 8))  # C3, C4, C5
        first = 2 if max_pool else 1  # stride-2 layers before layer2: conv1 (+ maxpool)
        self.halvings = (first + 1, first + 2, first + 3)                # C3, C4, C5
        self.strides = tuple(2 ** h for h in self.halvings)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, channels, num_blocks, stride):
        downsample = None
        if stride != 1 or self._in_channels != channels * block.expansion:
            downsample = nn.Sequential(conv1x1(self._in_channels, channels * block.expansion,
                                               stride),
                                       nn.BatchNorm2d(channels * block.expansion))
        layers = [block(self._in_channels, channels, stride, downsample)]
        self._in_channels = channels * block.expansion
        layers += [block(self._in_channels, channels) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def stages(self):
        """The backbone in order: stem (conv1, bn1), layer1, ..., layer4 (for freezing)."""
        return [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3,
                self.layer4]

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h, w) of C3, C4, C5 for an input of height x width."""
        return [(feature_size(height, n), feature_size(width, n)) for n in self.halvings]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [C3 (B, c3, H/s3, W/s3), C4, C5]; strides in `self.strides`."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]

    def pretrained_state(self, state: dict) -> tuple[dict, list]:
        """The torchvision names are this module's: the classifier (`fc.*`) is left out."""
        kept = {k: v for k, v in state.items() if not k.startswith('fc.')}
        return kept, sorted(set(state) - set(kept))
