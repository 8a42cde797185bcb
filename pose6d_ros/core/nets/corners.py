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

Anchors and the config: corners_anchors.py.

`forward` returns {'scores' (B, A, C+1) logits, 'boxes' (B, A, 4), 'corners' (B, A, 16),
'anchors' (A, 4)}; the anchors (x_min, y_min, x_max, y_max, input pixels) ride along so that
`corners_codec.loss_for_batch` / `decode_for_batch` need only the outputs and the config.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from pose6d_ros.core.nets import efficientnet
from pose6d_ros.core.nets.corners_anchors import (
    CornersConfig,
    level_sizes,
    level_strides,
    make_anchors,
    NUM_CORNERS,
)
from pose6d_ros.core.nets.corners_codec import decode_for_batch, loss_for_batch
from pose6d_ros.core.nets.pretrained import IMAGENET_NORMALISATION, load_pretrained
from pose6d_ros.core.nets.resnet import ResNet


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
        return loss_for_batch(outputs, targets, self.config, stage=stage, **options)

    def decode(self, outputs, **options):
        """Per image, a list of KeypointInstance (`corners_codec.decode_for_batch`)."""
        return decode_for_batch(outputs, self.config, **options)

    def config_dict(self) -> dict:
        """The model arguments for a checkpoint: `from_config_dict` rebuilds the network."""
        return self.config.to_dict()

    def input_normalisation(self) -> dict:
        """The image normalisation its backbone's ImageNet weights expect ({'mean', 'std'})."""
        return (IMAGENET_NORMALISATION if self.config.backbone == 'resnet'
                else efficientnet.NORMALISATION)

    def load_pretrained(self, path) -> str:
        """Load ImageNet weights from `path` into the backbone (pretrained.py); one-line report.

        Frozen stages (`frozen_stages`) keep these weights and their BN statistics.
        """
        what = (f'ResNet-{self.config.depth}' if self.config.backbone == 'resnet'
                else 'EfficientNet-Lite0')
        return load_pretrained(self.backbone, path, what)

    @classmethod
    def from_config_dict(cls, d: dict) -> CornersNet:
        """A freshly initialised CornersNet with the architecture stored by `config_dict`."""
        return cls(CornersConfig.from_dict(d))
