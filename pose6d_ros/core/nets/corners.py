"""The corners network: a single-shot detector that also regresses the 8 projected corners.

Zhang, Jiang, Zhang, "Real-Time 6D Pose Estimation from a Single RGB Image".

Architecture (numbers for the paper's 448x448 input):

- Backbone: ResNet-18/34/50 (`resnet.py`); by default ResNet-h (stem max-pool removed).
- FPN over C3, C4, C5 (1x1 laterals, nearest-neighbour top-down sums, 3x3 output convs), then
  P6 = 3x3 stride-2 conv on P5 and P7 = 3x3 stride-2 conv on ReLU(P6); `fpn_channels` (256) on
  every level. The paper's "P6 and P7 are successively down-sampled by a 3x3 stride-2
  convolution" is read as P5 -> P6 -> P7 (RetinaNet v2 / FCOS), which for ResNet-50 also saves
  the 4.7M parameters of a 3x3 conv on the 2048-channel C5.
- Strides of P3..P7: ResNet-h 4, 8, 16, 32, 64 (feature maps 112, 56, 28, 14, 7 at 448);
  plain ResNet 8, 16, 32, 64, 128.
- Head: one set of 3x3 convs shared by all levels (all have the same channels). With
  `head_convs = 0` (default) each output is a single 3x3 conv on the FPN level, as the paper
  ("each feature map is convolved with a set of 3x3xc_s kernels") and SSD do; `head_convs = n`
  puts RetinaNet-style towers of n 3x3 conv+ReLU layers before them (one tower for the class
  scores, one shared by the box and corner regressors; RetinaNet uses 4).
- Per anchor: C+1 class logits (0 = background), 4 box deltas, 16 corner offsets
  (dx, dy of corner 0, then corner 1, ...; corner order of geometry.py).

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

`forward` returns {'scores' (B, A, C+1) logits, 'boxes' (B, A, 4), 'corners' (B, A, 16),
'anchors' (A, 4)}; the anchors (x_min, y_min, x_max, y_max, input pixels) ride along so that
`corners_codec.loss_for_batch` / `decode_for_batch` need only the outputs and the config.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
import math

import torch
from torch import nn
import torch.nn.functional as F

from pose6d_ros.core.config_fields import dataclass_kwargs
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.nets import efficientnet
from pose6d_ros.core.nets.pretrained import IMAGENET_NORMALISATION, load_pretrained
from pose6d_ros.core.nets.resnet import feature_size, ResNet

PAPER_INPUT_SIZE = 448
PAPER_ANCHOR_SIZES = (25.0, 43.25, 74.83, 129.47, 224.0)  # 25 * (224/25)^(k/4), k = 0..4
NUM_LEVELS = 5            # P3..P7
NUM_CORNERS = 8
CORNER_MODES = ('indirect', 'direct')
BACKBONES = ('resnet', efficientnet.NAME)


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
        """Plain types only (lists for tuples), for JSON/YAML checkpoint cards."""
        out = {}
        for f in fields(self):
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


class FPN(nn.Module):
    """Feature pyramid over [C3, C4, C5] -> [P3, P4, P5, P6, P7], `channels` each."""

    def __init__(self, in_channels: tuple[int, int, int], channels: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1)
                                    for _ in in_channels)
        self.p6 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)  # torchvision's FPN init
                nn.init.zeros_(m.bias)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """[C3, C4, C5] -> [P3, ..., P7]; P_k+1 is half of P_k, rounded up."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 2, -1, -1):
            # size= rather than scale_factor=2: odd inputs give odd maps that do not double back.
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1],
                                                      size=laterals[i].shape[-2:],
                                                      mode='nearest')
        outs = [conv(p) for conv, p in zip(self.output, laterals)]
        p6 = self.p6(outs[-1])
        p7 = self.p7(F.relu(p6))
        return outs + [p6, p7]


def _tower(channels, num_convs):
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)  # empty = identity


class CornersHead(nn.Module):
    """3x3 conv predictors shared by all pyramid levels: class logits, box deltas, corners."""

    def __init__(self, channels: int, num_anchors: int, num_classes: int, num_convs: int = 0,
                 foreground_prior: float = 0.01):
        super().__init__()
        self.num_anchors, self.num_outputs = num_anchors, num_classes + 1
        self.cls_tower = _tower(channels, num_convs)
        self.reg_tower = _tower(channels, num_convs)
        self.cls = nn.Conv2d(channels, num_anchors * (num_classes + 1), 3, padding=1)
        self.box = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        self.corners = nn.Conv2d(channels, num_anchors * 2 * NUM_CORNERS, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # A fresh network says "background" with probability 1 - prior (RetinaNet's prior, here
        # for a softmax): decoding an untrained model yields few boxes, not 400 at p = 1/(C+1).
        with torch.no_grad():
            self.cls.bias.view(num_anchors, num_classes + 1)[:, 0] = math.log(
                num_classes * (1 - foreground_prior) / foreground_prior)

    def _flatten(self, x, per_anchor):
        b, _, h, w = x.shape
        # (B, a*K, h, w) -> (B, h, w, a, K) -> (B, h*w*a, K): the anchor order of make_anchors.
        return x.view(b, self.num_anchors, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(
            b, -1, per_anchor)

    def forward(self, features: list[torch.Tensor]):
        """[P3..P7] -> scores (B, A, C+1), boxes (B, A, 4), corners (B, A, 16)."""
        scores, boxes, corners = [], [], []
        for f in features:
            c, r = self.cls_tower(f), self.reg_tower(f)
            scores.append(self._flatten(self.cls(c), self.num_outputs))
            boxes.append(self._flatten(self.box(r), 4))
            corners.append(self._flatten(self.corners(r), 2 * NUM_CORNERS))
        return torch.cat(scores, 1), torch.cat(boxes, 1), torch.cat(corners, 1)


class CornersNet(nn.Module):
    """ResNet(-h) (or EfficientNet-Lite0) + FPN P3..P7 + shared 3x3 head; see the module."""

    def __init__(self, config: CornersConfig | None = None):
        super().__init__()
        cfg = config if config is not None else CornersConfig()
        self.config = cfg
        self.backbone = (
            ResNet(cfg.depth, max_pool=not cfg.resnet_h, width=cfg.backbone_width)
            if cfg.backbone == 'resnet'
            else efficientnet.EfficientNetLite0(strides=(4, 8, 16) if cfg.resnet_h
                                                else (8, 16, 32)))
        self.fpn = FPN(self.backbone.out_channels, cfg.fpn_channels)
        self.head = CornersHead(cfg.fpn_channels, cfg.anchors_per_location, cfg.num_classes,
                                cfg.head_convs)
        self.strides = level_strides(cfg.resnet_h)
        self._anchor_cache: dict = {}
        for stage in self.backbone.stages()[:cfg.frozen_stages]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        """As nn.Module.train, but frozen backbone stages keep their BN statistics fixed."""
        super().train(mode)
        for stage in self.backbone.stages()[:self.config.frozen_stages]:
            for m in stage.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def anchors(self, height: int, width: int, device=None) -> torch.Tensor:
        """Anchors (A, 4) for an input of height x width, cached per (size, device)."""
        key = (int(height), int(width), str(torch.device(device or 'cpu')))
        if key not in self._anchor_cache:
            self._anchor_cache[key] = make_anchors(self.config, height, width, device)
        return self._anchor_cache[key]

    def feature_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h, w) of P3..P7 for an input of height x width."""
        return level_sizes(self.config, height, width)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> [P3, ..., P7], each (B, fpn_channels, h_k, w_k)."""
        return self.fpn(self.backbone(x))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) normalised image -> {'scores', 'boxes', 'corners', 'anchors'}."""
        scores, boxes, corners = self.head(self.features(x))
        anchors = self.anchors(x.shape[-2], x.shape[-1], x.device)
        if anchors.shape[0] != scores.shape[1]:  # the size formula and the layers disagree
            raise RuntimeError(f'{scores.shape[1]} head outputs but {anchors.shape[0]} anchors '
                               f'for input {tuple(x.shape[-2:])}')
        return {'scores': scores,     # (B, A, C+1) logits, class 0 = background
                'boxes': boxes,       # (B, A, 4) SSD deltas w.r.t. the anchor
                'corners': corners,   # (B, A, 16) offsets, see corners_codec
                'anchors': anchors}   # (A, 4) input pixels

    def loss(self, outputs, targets, stage: int = 2, **options):
        """(total, {name: value}) of `corners_codec.loss_for_batch` with this model's config."""
        from pose6d_ros.core.nets.corners_codec import loss_for_batch

        return loss_for_batch(outputs, targets, self.config, stage=stage, **options)

    def decode(self, outputs, **options):
        """Per image, a list of KeypointInstance (`corners_codec.decode_for_batch`)."""
        from pose6d_ros.core.nets.corners_codec import decode_for_batch

        return decode_for_batch(outputs, self.config, **options)

    def config_dict(self) -> dict:
        """The model arguments for a checkpoint: `from_config_dict` rebuilds the network."""
        return self.config.to_dict()

    def input_normalisation(self) -> dict:
        """The image normalisation its backbone's ImageNet weights expect ({'mean', 'std'})."""
        return (IMAGENET_NORMALISATION if self.config.backbone == 'resnet'
                else efficientnet.NORMALISATION)

    def load_pretrained(self, path) -> str:
        """ImageNet weights from `path` into the backbone (pretrained.py); one-line report.

        Frozen stages (`frozen_stages`) keep these weights and their BN statistics.
        """
        what = (f'ResNet-{self.config.depth}' if self.config.backbone == 'resnet'
                else 'EfficientNet-Lite0')
        return load_pretrained(self.backbone, path, what)

    @classmethod
    def from_config_dict(cls, d: dict) -> CornersNet:
        """A freshly initialised CornersNet with the architecture stored by `config_dict`."""
        return cls(CornersConfig.from_dict(d))
