"""A DOPE-sized reference network, for speed comparisons only (`pose6d bench`).

DOPE (Tremblay et al., "Deep Object Pose Estimation for Semantic Robotic Grasping of
Household Objects", CoRL 2018): the first ten convolutions of VGG-19 (to conv4_2, stride 8),
two convolutions down to 128 channels, then six stages that each predict 9 belief maps and
8 two-channel affinity (vector) fields from the features and the previous stage's maps.
Stage 1 uses 3x3 convolutions, stages 2-6 use 7x7 ones, as in the paper. It is never trained
here: random weights time the same work.
"""

from __future__ import annotations

import torch
from torch import nn

VGG19_FIRST_TEN = (64, 64, 'pool', 128, 128, 'pool', 256, 256, 256, 256, 'pool', 512, 512)


def _conv(c_in, c_out, kernel, relu=True):
    layers = [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else layers[0]


class DopeStage(nn.Module):
    """One stage: belief and affinity branches over the same input."""

    def __init__(self, c_in, num_belief, num_affinity, first):
        super().__init__()
        kernel, depth, hidden = (3, 3, 512) if first else (7, 5, 128)

        def branch(outputs):
            layers = [_conv(c_in if i == 0 else 128, 128, kernel) for i in range(depth)]
            return nn.Sequential(*layers, _conv(128, hidden, 1), _conv(hidden, outputs, 1, False))

        self.belief = branch(num_belief)
        self.affinity = branch(num_affinity)

    def forward(self, x):
        return self.belief(x), self.affinity(x)


class DopeNet(nn.Module):
    """VGG-19 (ten convs) + 2 reducing convs + six stages; outputs like HRPose, at stride 8."""

    def __init__(self, num_classes=1, stages=6):
        super().__init__()
        layers, channels = [], 3
        for item in VGG19_FIRST_TEN:
            if item == 'pool':
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(_conv(channels, item, 3))
                channels = item
        layers += [_conv(512, 256, 3), _conv(256, 128, 3)]
        self.features = nn.Sequential(*layers)
        self.num_belief, self.num_affinity = 9 * num_classes, 16 * num_classes
        maps = self.num_belief + self.num_affinity
        self.stages = nn.ModuleList(
            [DopeStage(128, self.num_belief, self.num_affinity, True)]
            + [DopeStage(128 + maps, self.num_belief, self.num_affinity, False)
               for _ in range(stages - 1)])

    def forward(self, x):
        features = self.features(x)                       # (B, 128, H/8, W/8)
        belief, affinity = self.stages[0](features)
        for stage in self.stages[1:]:
            belief, affinity = stage(torch.cat([features, belief, affinity], dim=1))
        return {'belief': belief, 'vectors': affinity}
