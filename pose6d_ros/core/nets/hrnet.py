"""HRNetV2 backbone (Wang et al., "Deep High-Resolution Representation Learning", TPAMI 2020).

A stem of two 3x3 stride-2 convs (1/4 resolution), stage 1 of bottleneck blocks, then stages
2..4 that each add one branch at half the resolution of the previous one. Every stage is a
sequence of high-resolution modules: parallel branches of basic blocks followed by a fusion in
which every output branch sums all input branches (higher resolution -> strided 3x3 convs,
lower resolution -> 1x1 conv + BN + upsampling). The V2 representation upsamples all branches to
1/4 resolution (bilinear) and concatenates them: sum(widths) channels, 270 for W18.

Any input size works: a stride-2 3x3 conv with padding 1 gives ceil(n / 2), and every upsampling
goes to the exact size of the branch it joins, so an H x W input yields ceil(ceil(H / 2) / 2) =
ceil(H / 4) rows (H / 4 exactly when H is a multiple of 4) and likewise for columns.

Architecture numbers follow the official HRNet-Image-Classification experiment files
(cls_hrnet_w18_*.yaml, cls_hrnet_w18_small_v2_*.yaml); the code is written from the paper's
description, not copied.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import math
import re

import torch
from torch import nn
import torch.nn.functional as F

from pose6d_ros.core.config_fields import dataclass_kwargs
from pose6d_ros.core.errors import Pose6dError

BN_MOMENTUM = 0.1
BOTTLENECK_EXPANSION = 4
UPSAMPLE_MODES = ('nearest', 'bilinear')


@dataclass
class HRNetConfig:
    """Shape of an HRNetV2 backbone; the defaults are HRNetV2-W18."""

    stem_width: int = 64                       # channels of both 3x3 stride-2 stem convs
    stage1_width: int = 64                     # bottleneck width in stage 1 (outputs 4x this)
    stage1_blocks: int = 4                     # bottleneck blocks in stage 1
    widths: tuple[int, ...] = (18, 36, 72, 144)  # branch widths at 1/4, 1/8, 1/16, 1/32
    modules: tuple[int, ...] = (1, 4, 3)       # high-resolution modules in stages 2, 3, 4
    blocks: tuple[int, ...] = (4, 4, 4)        # basic blocks per branch per module, stages 2-4
    upsample: str = 'nearest'                  # fusion upsampling: 'nearest' (HRNet), 'bilinear'

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        self.modules = tuple(int(m) for m in self.modules)
        self.blocks = tuple(int(b) for b in self.blocks)
        counts = {'stem_width': self.stem_width, 'stage1_width': self.stage1_width,
                  'stage1_blocks': self.stage1_blocks}
        bad = [f'{k}={v}' for k, v in counts.items() if int(v) < 1]
        bad += [f'{k}={v}' for k, v in (('widths', self.widths), ('modules', self.modules),
                                        ('blocks', self.blocks)) if not v or min(v) < 1]
        if bad:
            raise Pose6dError(f'HRNetConfig: every width and count must be >= 1, got '
                              f'{", ".join(bad)}')
        if len(self.widths) < 2:
            raise Pose6dError(f'HRNetConfig: need at least 2 branch widths, got {self.widths}')
        stages = len(self.widths) - 1
        if len(self.modules) != stages or len(self.blocks) != stages:
            raise Pose6dError(
                f'HRNetConfig: {len(self.widths)} widths need {stages} entries (stages 2..'
                f'{stages + 1}) in modules and blocks, got modules={self.modules}, '
                f'blocks={self.blocks}')
        if self.upsample not in UPSAMPLE_MODES:
            raise Pose6dError(f'HRNetConfig: upsample must be one of {UPSAMPLE_MODES}, '
                              f'got {self.upsample!r}')

    @property
    def out_channels(self) -> int:
        """Channels of the V2 feature map: the sum of the branch widths (270 for W18)."""
        return sum(self.widths)

    def scaled(self, width: float = 1.0, depth: float = 1.0) -> HRNetConfig:
        """A copy with every width times `width` and every block/module count times `depth`.

        Counts and widths are rounded and kept >= 1: the knob for small test models.
        """
        def w(c):
            return max(1, round(c * width))

        def d(n):
            return max(1, round(n * depth))

        return HRNetConfig(stem_width=w(self.stem_width), stage1_width=w(self.stage1_width),
                           stage1_blocks=d(self.stage1_blocks),
                           widths=tuple(w(c) for c in self.widths),
                           modules=tuple(d(n) for n in self.modules),
                           blocks=tuple(d(n) for n in self.blocks), upsample=self.upsample)

    def to_dict(self) -> dict:
        """Plain types only (lists, ints, str), for YAML, JSON and torch.save(weights_only)."""
        out = asdict(self)
        for key in ('widths', 'modules', 'blocks'):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, d: dict) -> HRNetConfig:
        """Inverse of `to_dict`; unknown keys are an error rather than silently dropped."""
        return cls(**dataclass_kwargs(cls, d, 'HRNetConfig'))


def hrnet_w18() -> HRNetConfig:
    """HRNetV2-W18 (HRPose's teacher): stage 1 4 bottlenecks; modules 1/4/3, 4 blocks each."""
    return HRNetConfig()


def hrnet_w18_small() -> HRNetConfig:
    """Small HRNetV2-W18 "v2" (HRPose's student): 2 bottlenecks; modules 1/3/2, 2 blocks each."""
    return HRNetConfig(stage1_blocks=2, modules=(1, 3, 2), blocks=(2, 2, 2))


def hrnet_tiny() -> HRNetConfig:
    """A 0.2M-parameter HRNet for unit tests: widths 8/16/32/64, one module of one block."""
    return HRNetConfig(stem_width=16, stage1_width=8, stage1_blocks=1, widths=(8, 16, 32, 64),
                       modules=(1, 1, 1), blocks=(1, 1, 1))


PRESETS = {'hrnet_w18': hrnet_w18, 'hrnet_w18_small': hrnet_w18_small, 'hrnet_tiny': hrnet_tiny}


def get_config(name: str) -> HRNetConfig:
    """The preset called `name` (one of PRESETS)."""
    if name not in PRESETS:
        raise Pose6dError(f'unknown HRNet preset {name!r}; choose one of {sorted(PRESETS)}')
    return PRESETS[name]()


def conv_bn(c_in, c_out, kernel=3, stride=1, relu=True) -> nn.Sequential:
    """Conv (no bias, BN follows) + BN (+ ReLU)."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
              nn.BatchNorm2d(c_out, momentum=BN_MOMENTUM)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN with an identity shortcut (width is constant inside a branch)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = conv_bn(width, width)
        self.conv2 = conv_bn(width, width, relu=False)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        out += x   # in place: a fresh tensor, whose producer (conv or BN) keeps no copy of it
        return F.relu(out, inplace=True)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (4x wider) conv-BN, with a 1x1 conv-BN shortcut when widths differ."""

    def __init__(self, c_in: int, width: int):
        super().__init__()
        c_out = width * BOTTLENECK_EXPANSION
        self.body = nn.Sequential(conv_bn(c_in, width, 1), conv_bn(width, width, 3),
                                  conv_bn(width, c_out, 1, relu=False))
        self.shortcut = (nn.Identity() if c_in == c_out
                         else conv_bn(c_in, c_out, 1, relu=False))

    def forward(self, x):
        out = self.body(x)
        out += self.shortcut(x)
        return F.relu(out, inplace=True)


class FuseUp(nn.Module):
    """From a lower-resolution branch: 1x1 conv + BN, then upsampling to the target's size."""

    def __init__(self, c_in: int, c_out: int, mode: str):
        super().__init__()
        self.proj = conv_bn(c_in, c_out, 1, relu=False)
        self.mode = mode

    def forward(self, x, size):
        x = self.proj(x)
        if self.mode == 'nearest':
            return F.interpolate(x, size=size, mode='nearest')
        return F.interpolate(x, size=size, mode=self.mode, align_corners=False)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then every output branch sums every input branch."""

    def __init__(self, widths: tuple[int, ...], num_blocks: int, upsample: str):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(w) for _ in range(num_blocks)]) for w in widths)
        self.fuse = nn.ModuleList()
        for i, w_out in enumerate(widths):
            row = nn.ModuleList()
            for j, w_in in enumerate(widths):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(FuseUp(w_in, w_out, upsample))
                else:
                    # i - j stride-2 convs; intermediate ones keep the input width and have a
                    # ReLU, the last one maps to the output width and is summed before ReLU.
                    steps = i - j
                    row.append(nn.Sequential(*[
                        conv_bn(w_in, w_out if s == steps - 1 else w_in, 3, 2,
                                relu=s < steps - 1) for s in range(steps)]))
            self.fuse.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            size = xs[i].shape[-2:]
            y = None   # xs[i] is an input of the other rows too: it is never changed in place
            for j, layer in enumerate(row):
                if j != i:
                    z = layer(xs[j], size) if j > i else layer(xs[j])
                    y = xs[i] + z if y is None else y.add_(z)
            out.append(F.relu(xs[i]) if y is None else F.relu(y, inplace=True))
        return out


class Transition(nn.Module):
    """Between stages: 3x3 conv-BN-ReLU where a branch changes width, plus one new branch.

    The new branch is made by a stride-2 3x3 conv from the lowest-resolution branch.
    """

    def __init__(self, widths_in: tuple[int, ...], widths_out: tuple[int, ...]):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Identity() if w_in == w_out else conv_bn(w_in, w_out)
            for w_in, w_out in zip(widths_in, widths_out))
        self.new_branch = conv_bn(widths_in[-1], widths_out[-1], 3, 2)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(x) for layer, x in zip(self.layers, xs)] + [self.new_branch(xs[-1])]


class HRNet(nn.Module):
    """HRNetV2 backbone: (B, 3, H, W) image -> (B, sum(widths), ceil(H/4), ceil(W/4)) features."""

    def __init__(self, config: HRNetConfig | None = None):
        super().__init__()
        cfg = config if config is not None else HRNetConfig()
        self.config = cfg
        self.stem = nn.Sequential(conv_bn(3, cfg.stem_width, 3, 2),
                                  conv_bn(cfg.stem_width, cfg.stem_width, 3, 2))
        c = cfg.stem_width
        layer1 = []
        for _ in range(cfg.stage1_blocks):
            layer1.append(Bottleneck(c, cfg.stage1_width))
            c = cfg.stage1_width * BOTTLENECK_EXPANSION
        self.layer1 = nn.Sequential(*layer1)

        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        widths_in = (c,)
        for s, (n_modules, n_blocks) in enumerate(zip(cfg.modules, cfg.blocks)):
            widths = cfg.widths[:s + 2]
            self.transitions.append(Transition(widths_in, widths))
            self.stages.append(nn.Sequential(*[
                HighResolutionModule(widths, n_blocks, cfg.upsample) for _ in range(n_modules)]))
            widths_in = widths
        self.out_channels = cfg.out_channels
        self.reset_parameters()

    def reset_parameters(self):
        """Kaiming-normal convs (fan_out, as the HRNet classification code), BN to identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def pretrained_state(self, state: dict) -> tuple[dict, list]:
        """An ImageNet checkpoint of the official HRNet layout in this module's names.

        Returns (mapped tensors, names left out): the classification head (`incre_modules`,
        `downsamp_modules`, `final_layer`, `classifier`) is left out; see `official_name_map`.
        """
        mapped, left_out = {}, []
        for key, value in state.items():
            own = official_name_map(key)
            if own is None:
                left_out.append(key)
            else:
                mapped[own] = value
        return mapped, sorted(left_out)

    def forward_branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The multi-resolution outputs of the last stage: [(B, widths[i], H/4/2^i, W/4/2^i)]."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f'HRNet expects a (B, 3, H, W) image batch, got {tuple(x.shape)}')
        x = self.layer1(self.stem(x))   # (B, 4 * stage1_width, H/4, W/4)
        xs = [x]
        for transition, stage in zip(self.transitions, self.stages):
            xs = stage(transition(xs))
        return xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, sum(widths), ceil(H/4), ceil(W/4)) concatenated V2 features."""
        xs = self.forward_branches(x)
        size = xs[0].shape[-2:]
        ups = [xs[0]] + [F.interpolate(y, size=size, mode='bilinear', align_corners=False)
                         for y in xs[1:]]
        return torch.cat(ups, dim=1)


# The official HRNet-Image-Classification names -> ours (see `official_name_map`).
_PARAMETER = r'(weight|bias|running_mean|running_var|num_batches_tracked)$'
_OFFICIAL_NAMES = [
    (r'conv([12])\.' + _PARAMETER, lambda m: f'stem.{int(m[1]) - 1}.0.{m[2]}'),
    (r'bn([12])\.' + _PARAMETER, lambda m: f'stem.{int(m[1]) - 1}.1.{m[2]}'),
    (r'layer1\.(\d+)\.conv([123])\.' + _PARAMETER,
     lambda m: f'layer1.{m[1]}.body.{int(m[2]) - 1}.0.{m[3]}'),
    (r'layer1\.(\d+)\.bn([123])\.' + _PARAMETER,
     lambda m: f'layer1.{m[1]}.body.{int(m[2]) - 1}.1.{m[3]}'),
    (r'layer1\.(\d+)\.downsample\.([01])\.' + _PARAMETER,
     lambda m: f'layer1.{m[1]}.shortcut.{m[2]}.{m[3]}'),
    # transitionT.T is the new branch, Sequential(Sequential(conv, bn, relu)); the lower
    # indices are the branches that change width, Sequential(conv, bn, relu).
    (r'transition(\d)\.(\d+)\.0\.([01])\.' + _PARAMETER,
     lambda m: (f'transitions.{int(m[1]) - 1}.new_branch.{m[3]}.{m[4]}'
                if m[1] == m[2] else None)),
    (r'transition(\d)\.(\d+)\.([01])\.' + _PARAMETER,
     lambda m: (f'transitions.{int(m[1]) - 1}.layers.{m[2]}.{m[3]}.{m[4]}'
                if m[1] != m[2] else None)),
    (r'stage(\d)\.(\d+)\.branches\.(\d+)\.(\d+)\.(conv|bn)([12])\.' + _PARAMETER,
     lambda m: (f'stages.{int(m[1]) - 2}.{m[2]}.branches.{m[3]}.{m[4]}.conv{m[6]}.'
                f'{0 if m[5] == "conv" else 1}.{m[7]}')),
    # fuse_layers.I.J: from a lower resolution (J > I) Sequential(conv1x1, bn, upsample), from
    # a higher one (J < I) Sequential of Sequential(conv3x3, bn[, relu]).
    (r'stage(\d)\.(\d+)\.fuse_layers\.(\d+)\.(\d+)\.([01])\.' + _PARAMETER,
     lambda m: (f'stages.{int(m[1]) - 2}.{m[2]}.fuse.{m[3]}.{m[4]}.proj.{m[5]}.{m[6]}'
                if int(m[4]) > int(m[3]) else None)),
    (r'stage(\d)\.(\d+)\.fuse_layers\.(\d+)\.(\d+)\.(\d+)\.([01])\.' + _PARAMETER,
     lambda m: (f'stages.{int(m[1]) - 2}.{m[2]}.fuse.{m[3]}.{m[4]}.{m[5]}.{m[6]}.{m[7]}'
                if int(m[4]) < int(m[3]) else None)),
]


def official_name_map(key: str) -> str | None:
    """Our name of an official HRNet ImageNet checkpoint's tensor; None for its classifier.

    The official code (and timm's HRNets) names the stem conv1/bn1/conv2/bn2, stage 1
    `layer1` (torchvision bottlenecks), then transition1..3 and stage2..4 with `branches` and
    `fuse_layers`; the classification head is `incre_modules`, `downsamp_modules`,
    `final_layer` and `classifier`. A name of neither kind maps to itself, so that the loader
    reports it as not belonging to this network.
    """
    if key.startswith(('incre_modules.', 'downsamp_modules.', 'final_layer.', 'classifier.')):
        return None
    for pattern, rename in _OFFICIAL_NAMES:
        match = re.fullmatch(pattern, key)
        if match:
            return rename(match) or key
    return key


def output_size(height: int, width: int) -> tuple[int, int]:
    """Feature-map size of an HRNet for an input of height x width pixels (stride 4, ceil)."""
    def down(n):
        return math.ceil(math.ceil(n / 2) / 2)

    return down(height), down(width)
