"""HRPose (Guan et al.): an HRNetV2 backbone and a regressor of three convs.

The paper is "HRPose: Real-Time High-Resolution 6D Pose Estimation Network Using Knowledge
Distillation". The regressor predicts, per object class, 9 belief maps and 8 corner-to-centroid
vector fields at 1/4 input resolution.

Output layout (class-major, C classes, K = 9 keypoints: 8 box corners then the centroid):

- `belief`  (B, C * 9, H/4, W/4): class c's map of keypoint k is channel c * 9 + k.
- `vectors` (B, C * 16, H/4, W/4): class c's field k (from corner k towards the centroid) is the
  channel pair (c * 16 + 2k, c * 16 + 2k + 1) = (dx, dy).
- `features` (B, sum(widths), H/4, W/4): the backbone's V2 features, for the feature-similarity
  distillation.

`per_class` reshapes the first two to (B, C, 9, h, w) and (B, C, 8, 2, h, w). H/4 means
ceil(H / 4) (see hrnet.py); the codec's stride is 4.

Beliefs are raw linear outputs (no sigmoid), regressed with MSE to Gaussians in [0, 1] as in the
paper and DOPE: a sigmoid under MSE has vanishing gradients on the ~all-zero background and at
saturated peaks, and the output distillation then compares the same linear maps of teacher and
student. The vector fields are linear too (unit-vector components, zero away from corners).
The last 1x1 conv starts with tiny weights and zero bias, so a fresh network predicts ~0, the
background value of both targets.

The teacher is HRPose on HRNetV2-W18, the student on small HRNetV2-W18 (v2). With a regressor
width of 64 the heads add ~0.19M parameters: teacher 9.76M and student 4.05M for one class,
against 9.7M and 4.2M in the paper's Table III (`parameter_report` computes them).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pose6d_ros.core.config_fields import dataclass_kwargs
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.nets import efficientnet
from pose6d_ros.core.nets.hrnet import conv_bn, get_config, HRNet, HRNetConfig
from pose6d_ros.core.nets.pretrained import IMAGENET_NORMALISATION, load_pretrained

TEACHER_BACKBONE = 'hrnet_w18'
STUDENT_BACKBONE = 'hrnet_w18_small'
# Backbones that are not HRNets: their stride-4 fusion stands where HRNetV2's features do.
OTHER_BACKBONES = (efficientnet.NAME,)


@dataclass
class HRPoseConfig:
    """Everything needed to rebuild an HRPose network (stored in every checkpoint)."""

    # An HRNet preset name or explicit config, or 'efficientnet_lite0' (efficientnet.py).
    backbone: str | HRNetConfig = STUDENT_BACKBONE
    num_classes: int = 1           # object classes; each gets its own belief maps and fields
    num_keypoints: int = 9         # keypoints per object: 8 box corners + the centroid
    head_width: int = 64           # channels of the regressor's two 3x3 conv-BN-ReLU layers
    head_init_std: float = 0.001   # std of the last 1x1 conv's initial weights (bias starts 0)

    def __post_init__(self):
        if isinstance(self.backbone, dict):
            self.backbone = HRNetConfig.from_dict(self.backbone)
        if not isinstance(self.backbone, (str, HRNetConfig)):
            raise Pose6dError(f'HRPoseConfig.backbone must be a preset name or an HRNetConfig, '
                              f'got {type(self.backbone).__name__}')
        self.backbone_config()  # unknown preset names fail here, not at build time
        if self.num_classes < 1:
            raise Pose6dError(f'HRPoseConfig.num_classes must be >= 1, got {self.num_classes}')
        if self.num_keypoints < 2:
            raise Pose6dError(f'HRPoseConfig.num_keypoints must be >= 2 (corners + centroid), '
                              f'got {self.num_keypoints}')
        if self.head_width < 1:
            raise Pose6dError(f'HRPoseConfig.head_width must be >= 1, got {self.head_width}')

    @property
    def is_hrnet(self) -> bool:
        """Whether the backbone is an HRNet (else one of OTHER_BACKBONES)."""
        return self.backbone not in OTHER_BACKBONES

    @property
    def num_vectors(self) -> int:
        """Two-channel vector fields per class: one per keypoint except the centroid."""
        return self.num_keypoints - 1

    def backbone_config(self) -> HRNetConfig | str:
        """The backbone's HRNetConfig, resolving a preset name (other backbones: the name)."""
        if not self.is_hrnet:
            return self.backbone
        if isinstance(self.backbone, HRNetConfig):
            return self.backbone
        return get_config(self.backbone)

    def to_dict(self) -> dict:
        """Plain types only.

        The backbone is stored resolved so a checkpoint never depends on what a preset name
        means in a later version.
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        backbone = self.backbone_config()
        out['backbone'] = backbone.to_dict() if self.is_hrnet else backbone
        return out

    @classmethod
    def from_dict(cls, d: dict) -> HRPoseConfig:
        """Inverse of `to_dict` (the backbone may be a preset name or a dict)."""
        return cls(**dataclass_kwargs(cls, d, 'HRPoseConfig'))


class HRPose(nn.Module):
    """Stride-4 backbone features -> conv-BN-ReLU, conv-BN-ReLU, 1x1 conv -> maps + fields.

    The features are HRNetV2's (or, for `efficientnet_lite0`, that trunk's stride-4 fusion).
    """

    def __init__(self, config: HRPoseConfig | None = None):
        super().__init__()
        cfg = config if config is not None else HRPoseConfig()
        self.config = cfg
        self.backbone = (HRNet(cfg.backbone_config()) if cfg.is_hrnet
                         else efficientnet.KeypointFeatures(cfg.head_width))
        self.num_belief = cfg.num_classes * cfg.num_keypoints
        self.num_vector_channels = cfg.num_classes * cfg.num_vectors * 2
        w = cfg.head_width
        self.regressor = nn.Sequential(
            conv_bn(self.backbone.out_channels, w, 3),
            conv_bn(w, w, 3),
            nn.Conv2d(w, self.num_belief + self.num_vector_channels, 1),
        )
        self.reset_head()

    def reset_head(self):
        """Kaiming for the regressor's 3x3 convs; the last conv starts near zero (see module)."""
        for m in self.regressor.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        last = self.regressor[-1]
        nn.init.normal_(last.weight, std=self.config.head_init_std)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) normalised image -> {'belief', 'vectors', 'features'}; see the module."""
        features = self.backbone(x)          # (B, sum(widths), H/4, W/4)
        out = self.regressor(features)       # (B, C * 9 + C * 16, H/4, W/4)
        return {'belief': out[:, :self.num_belief],     # (B, C * 9, H/4, W/4)
                'vectors': out[:, self.num_belief:],    # (B, C * 16, H/4, W/4)
                'features': features}

    def config_dict(self) -> dict:
        """The model arguments for a checkpoint: `from_config_dict` rebuilds the network."""
        return self.config.to_dict()

    def input_normalisation(self) -> dict:
        """The image normalisation its backbone's ImageNet weights expect ({'mean', 'std'})."""
        return IMAGENET_NORMALISATION if self.config.is_hrnet else efficientnet.NORMALISATION

    def load_pretrained(self, path) -> str:
        """Load ImageNet weights from `path` into the backbone (pretrained.py); one-line report."""
        if self.config.is_hrnet:
            widths = '/'.join(str(w) for w in self.backbone.config.widths)
            return load_pretrained(self.backbone, path, f'HRNet (widths {widths})')
        return load_pretrained(self.backbone.pretrained_target(), path, 'EfficientNet-Lite0')

    @classmethod
    def from_config_dict(cls, d: dict) -> HRPose:
        """A freshly initialised HRPose with the architecture stored by `config_dict`."""
        return cls(HRPoseConfig.from_dict(d))


def per_class(outputs: dict[str, torch.Tensor], num_keypoints: int = 9):
    """Views of HRPose outputs by class: belief (B, C, K, h, w), vectors (B, C, K-1, 2, h, w)."""
    belief, vectors = outputs['belief'], outputs['vectors']
    b, _, h, w = belief.shape
    return (belief.reshape(b, -1, num_keypoints, h, w),
            vectors.reshape(b, -1, num_keypoints - 1, 2, h, w))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, height: int, width: int) -> int:
    """The FLOPs of one forward pass on a 1 x 3 x height x width input.

    Torch's counter: 2 per MAC, convolutions and matmuls only. A model on the meta device is
    counted without computing.
    """
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, height, width, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops()


def parameter_report(classes: tuple[int, ...] = (1, 8), size: tuple[int, int] = (640, 480),
                     flops: bool = False) -> dict:
    """Parameter counts (and optionally GFLOPs at size = (width, height)) of HRPose's networks.

    The teacher and the student of the paper, and the student's regressor on EfficientNet-Lite0
    (`lite0`), the light pretrained backbone. Returns {role: {'backbone': name,
    'backbone_params': n, num_classes: {'params': n, 'gflops': g or None}}}. FLOPs are counted
    on the meta device (shapes only, no arithmetic): under a second without FLOPs, a few
    seconds with them.
    """
    report = {}
    for role, name in (('teacher', TEACHER_BACKBONE), ('student', STUDENT_BACKBONE),
                       ('lite0', efficientnet.NAME)):
        entry = {'backbone': name}
        for n in classes:
            model = HRPose(HRPoseConfig(backbone=name, num_classes=n))
            entry['backbone_params'] = count_parameters(model.backbone)
            gflops = (count_flops(model.to('meta'), size[1], size[0]) / 1e9 if flops else None)
            entry[n] = {'params': count_parameters(model), 'gflops': gflops}
        report[role] = entry
    return report
