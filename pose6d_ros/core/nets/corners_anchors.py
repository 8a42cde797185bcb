"""The corners network's configuration and its anchor layout, shared by the network and codec.

Anchors (`anchor_shapes`, `make_anchors`): at every location, for the level's size s_k, one box
per ratio in `anchor_ratios` (width/height 1:2, 1:1, 2:1: w = s_k sqrt(r), h = s_k / sqrt(r)),
then SSD's extra 1:1 box of side sqrt(s_k s_k+1). That is 4 anchors per location, and with
ResNet-h at 448 the paper's total of 66836 anchors = 4 * (112^2 + 56^2 + 28^2 + 14^2 + 7^2);
three per location could not give that number. The paper gives only the end points 25 and 224
for P3 and P7; the five sizes are spaced geometrically, s_k = 25 * (224/25)^(k/4), because the
strides double from level to level:

    level   P3      P4      P5      P6      P7
    s_k     25.00   43.25   74.83   129.47  224.00
    extra   32.88   56.89   98.43   170.30  294.64     (P7's uses s_5 = 224^2 / 129.47 = 387.55)

Sizes are pixels at a 448-pixel input and scale with min(input_size) / 448, so a model trained
at 300x300 (the paper's fast variant) has anchors of 300/448 of these. The anchor centres are
((i + 0.5) * stride - 0.5) in pixels (origin at the centre of the top-left pixel), rows then
columns then the anchors of a location: the same order as the flattened head outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
import math

import torch

from pose6d_ros.core.config_fields import dataclass_kwargs
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.nets import efficientnet
from pose6d_ros.core.nets.resnet import feature_size

PAPER_INPUT_SIZE = 448
PAPER_ANCHOR_SIZES = (25.0, 43.25, 74.83, 129.47, 224.0)  # 25 * (224/25)^(k/4), k = 0..4
NUM_LEVELS = 5            # P3..P7
NUM_CORNERS = 8
CORNER_MODES = ('indirect', 'direct')
BACKBONES = ('resnet', efficientnet.NAME)
RESNET_ONLY_FIELDS = ('depth', 'backbone_width')


@dataclass
class CornersConfig:
    """Everything needed to rebuild a corners network and read its outputs (in checkpoints)."""

    num_classes: int = 1            # object classes; the softmax adds a background class 0
    backbone: str = 'resnet'        # 'resnet' (the paper) or 'efficientnet_lite0'
    depth: int = 50                 # ResNet depth: 18, 34 or 50 (the paper uses 50)
    # ResNet-h: no stem max-pool, P3..P7 at strides 4..64 (EfficientNet-Lite0: C3..C5 from
    # its stride 4, 8, 16 blocks; else from its stride 8, 16, 32 blocks, as a plain ResNet).
    resnet_h: bool = True
    backbone_width: int = 64        # ResNet stem channels; 64 = the real one (ImageNet weights)
    fpn_channels: int = 256         # channels of P3..P7 and of the head
    head_convs: int = 0             # 3x3 conv+ReLU per head tower: 0 = paper/SSD, 4 = RetinaNet
    input_size: tuple = (448, 448)  # (width, height) trained at; anchors scale by min(.) / 448
    anchor_sizes: tuple = PAPER_ANCHOR_SIZES  # side (px) of the 1:1 anchor, P3..P7, at 448
    anchor_ratios: tuple = (0.5, 1.0, 2.0)  # anchor width / height at every location
    extra_square_anchor: bool = True  # SSD's extra 1:1 anchor of side sqrt(s_k * s_k+1)
    corner_mode: str = 'indirect'   # corner offsets from the regressed box, or 'direct' (anchor)
    use_centre_as_ninth: bool = False  # decoded keypoint 8 = 2D box centre (else NaN)
    box_variances: tuple = (0.1, 0.2)  # SSD scaling of the centre and log-size box deltas
    frozen_stages: int = 0          # backbone stages kept fixed: 1 = stem, 2 = + layer1, ...

    def __post_init__(self):
        self.input_size = _int_pair(self.input_size, 'input_size')
        self.anchor_sizes = tuple(float(s) for s in self.anchor_sizes)
        self.anchor_ratios = tuple(float(r) for r in self.anchor_ratios)
        self.box_variances = tuple(float(v) for v in self.box_variances)
        checks = [
            (self.num_classes >= 1, f'num_classes must be >= 1, got {self.num_classes}'),
            (self.backbone in BACKBONES,
             f'backbone must be one of {", ".join(BACKBONES)}, got {self.backbone!r}'),
            (self.depth in (18, 34, 50), f'depth must be 18, 34 or 50, got {self.depth}'),
            (self.backbone_width >= 1,
             f'backbone_width must be >= 1, got {self.backbone_width}'),
            (self.fpn_channels >= 1, f'fpn_channels must be >= 1, got {self.fpn_channels}'),
            (self.head_convs >= 0, f'head_convs must be >= 0, got {self.head_convs}'),
            (len(self.anchor_sizes) == NUM_LEVELS and all(s > 0 for s in self.anchor_sizes),
             f'anchor_sizes must be {NUM_LEVELS} positive sizes (P3..P7), '
             f'got {list(self.anchor_sizes)}'),
            (len(self.anchor_ratios) >= 1 and all(r > 0 for r in self.anchor_ratios),
             f'anchor_ratios must be positive width/height ratios, '
             f'got {list(self.anchor_ratios)}'),
            (self.corner_mode in CORNER_MODES,
             f'corner_mode must be one of {", ".join(CORNER_MODES)}, got {self.corner_mode!r}'),
            (len(self.box_variances) == 2 and all(v > 0 for v in self.box_variances),
             f'box_variances must be two positive numbers, got {list(self.box_variances)}'),
            (0 <= self.frozen_stages <= 5,
             f'frozen_stages must be in 0..5, got {self.frozen_stages}'),
        ]
        for ok, message in checks:
            if not ok:
                raise Pose6dError(f'CornersConfig.{message}')

    @property
    def anchors_per_location(self) -> int:
        """Anchors at every feature-map location: one per ratio, plus the extra square one."""
        return len(self.anchor_ratios) + int(self.extra_square_anchor)

    @property
    def anchor_scale(self) -> float:
        """Factor from the paper's 448-pixel anchor sizes to this model's input size."""
        return min(self.input_size) / PAPER_INPUT_SIZE

    def to_dict(self) -> dict:
        """Plain types only (lists for tuples), for JSON/YAML checkpoint cards.

        The ResNet-only fields are left out for another backbone, where they do nothing and a
        reader of the card would take them for its backbone (`from_dict` gives the defaults).
        """
        out = {}
        for f in fields(self):
            if f.name in RESNET_ONLY_FIELDS and self.backbone != 'resnet':
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, d: dict) -> CornersConfig:
        """Inverse of `to_dict`; unknown keys are an error, missing keys take the defaults."""
        return cls(**dataclass_kwargs(cls, d, 'CornersConfig'))


def _int_pair(value, name):
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise Pose6dError(f'CornersConfig.{name} must be [width, height] in pixels, got {value!r}')
    return pair


def level_halvings(resnet_h: bool) -> tuple[int, ...]:
    """Number of stride-2 layers before P3..P7 (the strides are 2 ** these)."""
    first = 2 if resnet_h else 3  # C3 follows conv1, (maxpool,) layer2
    return tuple(range(first, first + NUM_LEVELS))


def level_strides(resnet_h: bool) -> tuple[int, ...]:
    """Strides of P3..P7 in input pixels: (4, ..., 64) for ResNet-h, (8, ..., 128) otherwise."""
    return tuple(2 ** h for h in level_halvings(resnet_h))


def level_sizes(config: CornersConfig, height: int, width: int) -> list[tuple[int, int]]:
    """(h, w) of P3..P7 for an input of height x width (each stride-2 layer rounds up)."""
    return [(feature_size(height, n), feature_size(width, n))
            for n in level_halvings(config.resnet_h)]


def anchor_shapes(config: CornersConfig) -> list[torch.Tensor]:
    """Per level, the (width, height) in pixels of its anchors, (anchors_per_location, 2)."""
    sizes = [s * config.anchor_scale for s in config.anchor_sizes]
    sizes.append(sizes[-1] ** 2 / sizes[-2])  # continue the progression for P7's extra anchor
    shapes = []
    for k in range(NUM_LEVELS):
        level = [(sizes[k] * math.sqrt(r), sizes[k] / math.sqrt(r)) for r in config.anchor_ratios]
        if config.extra_square_anchor:
            extra = math.sqrt(sizes[k] * sizes[k + 1])
            level.append((extra, extra))
        shapes.append(torch.tensor(level, dtype=torch.float64))
    return shapes


def make_anchors(config: CornersConfig, height: int, width: int,
                 device=None) -> torch.Tensor:
    """All anchors (A, 4) x_min, y_min, x_max, y_max (float32) for a height x width input.

    Ordered by level, row, column, then anchor of the location, as the flattened head outputs.
    """
    out = []
    for (h, w), stride, shapes in zip(level_sizes(config, height, width),
                                      level_strides(config.resnet_h), anchor_shapes(config)):
        cy = (torch.arange(h, dtype=torch.float64) + 0.5) * stride - 0.5
        cx = (torch.arange(w, dtype=torch.float64) + 0.5) * stride - 0.5
        cy, cx = torch.meshgrid(cy, cx, indexing='ij')
        centres = torch.stack([cx, cy], -1).reshape(h, w, 1, 2)    # (h, w, 1, 2)
        half = (shapes / 2).reshape(1, 1, -1, 2)                    # (1, 1, a, 2)
        out.append(torch.cat([centres - half, centres + half], -1).reshape(-1, 4))
    return torch.cat(out).to(device=device, dtype=torch.float32)
