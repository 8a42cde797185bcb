"""BatchNorm folding for inference keeps the networks' outputs and removes every BatchNorm."""

import torch
from torch import nn

from pose6d_ros.core.nets.corners import CornersConfig, CornersNet
from pose6d_ros.core.nets.fuse import fuse_conv_bn
from pose6d_ros.core.nets.hrpose import HRPose, HRPoseConfig


def _randomise_batch_norms(model):
    """Trained-like BN statistics, so folding has something to fold."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)
    return model.eval()


def count_batch_norms(model):
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_hrpose_and_corners_fold_completely_and_keep_their_outputs():
    image = torch.rand(1, 3, 64, 96)
    for model in (HRPose(HRPoseConfig(backbone='hrnet_tiny', num_classes=2)),
                  CornersNet(CornersConfig(depth=18, backbone_width=8, fpn_channels=16,
                                           input_size=(96, 64)))):
        model = _randomise_batch_norms(model)
        fused = fuse_conv_bn(model, image)
        assert fused is not model and count_batch_norms(fused) == 0
        assert count_batch_norms(model) > 0  # the original is untouched
        with torch.inference_mode():
            expected, actual = model(image), fused(image)
        for key in expected:
            scale = 1.0 + expected[key].abs().max()
            assert (expected[key] - actual[key]).abs().max() < 1e-4 * scale, key


def test_a_model_whose_registration_order_lies_is_left_alone():
    class BatchNormFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.norm = nn.BatchNorm2d(4)
            self.other = nn.Conv2d(4, 4, 1)

        def forward(self, x):  # uses the BN after `other`, not after `conv`
            return self.norm(self.other(self.conv(x)))

    model = _randomise_batch_norms(BatchNormFirst())
    assert fuse_conv_bn(model, torch.rand(1, 3, 8, 8)) is model
