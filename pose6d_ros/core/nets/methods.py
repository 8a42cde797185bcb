"""The two methods behind one interface, for the training loop and the estimator.

A method knows how to build its network, turn labelled instances into targets, compute its
loss, and decode network outputs into `KeypointInstance`s (network-input pixels). Everything
after decoding (letterbox undone, PnP, filtering) is shared and lives in the estimator.
"""

from __future__ import annotations

from dataclasses import asdict
import math

import numpy as np
import torch

from pose6d_ros.core.config_fields import check_keys, dataclass_kwargs
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.nets import corners_codec
from pose6d_ros.core.nets.corners import CornersNet
from pose6d_ros.core.nets.hrpose import HRPose, HRPoseConfig
from pose6d_ros.core.nets.hrpose_loss import split_keypoint_loss
from pose6d_ros.core.nets.keypoint_codec import CodecConfig, decode, encode


class KeypointsMethod:
    """HRPose: belief maps + vector fields (Guan et al.)."""

    name = 'keypoints'

    def __init__(self, num_classes, network=None, decoder=None, loss=None):
        self.num_classes = int(num_classes)
        self.network_config = dict(network or {})
        self.network_config['num_classes'] = self.num_classes
        self.codec = _dataclass_from(CodecConfig, decoder or {}, 'decoder')
        loss = check_keys(loss, ('peak_weight',), 'keypoints loss')
        self.peak_weight = float(loss.get('peak_weight', 0.0))

    def build_network(self):
        return HRPose(HRPoseConfig.from_dict(self.network_config))

    def decoder_config(self):
        return asdict(self.codec)

    def targets(self, instances, input_size):
        """{'belief': (C*9, h, w), 'vectors': (C*16, h, w)} for one sample."""
        width, height = input_size
        belief, vectors = encode([(i.class_id, i.keypoints) for i in instances],
                                 self.num_classes, math.ceil(height / self.codec.stride),
                                 math.ceil(width / self.codec.stride), self.codec)
        return {'belief': torch.from_numpy(belief), 'vectors': torch.from_numpy(vectors)}

    def loss(self, outputs, targets, stage=2):
        """Task loss: MSE on maps and fields (see hrpose_loss) -> (total, {name: value})."""
        belief, vectors = split_keypoint_loss(outputs, targets, self.peak_weight)
        return belief + vectors, {'belief': belief.detach(), 'vectors': vectors.detach()}

    def decode(self, outputs):
        """Per image, a list of KeypointInstance in network-input pixels."""
        return decode(outputs['belief'], outputs['vectors'], self.num_classes, self.codec)


class CornersMethod:
    """Single-shot detector regressing the 8 box corners (Zhang et al.)."""

    name = 'corners'

    def __init__(self, num_classes, network=None, decoder=None, loss=None):
        self.num_classes = int(num_classes)
        self.network_config = dict(network or {})
        self.network_config['num_classes'] = self.num_classes
        self.decoder = dict(decoder or {})
        self.loss_options = dict(loss or {})  # corners_codec.LossConfig fields

    def build_network(self):
        return CornersNet.from_config_dict(self.network_config)

    def decoder_config(self):
        return dict(self.decoder)

    def targets(self, instances, input_size):
        """Variable-length ground truth: boxes (N, 4), corners (N, 8, 2), labels (N,)."""
        return {
            'boxes': torch.from_numpy(np.array([i.box for i in instances], np.float32)
                                      .reshape(-1, 4)),
            'corners': torch.from_numpy(np.array([i.keypoints[:8] for i in instances],
                                                 np.float32).reshape(-1, 8, 2)),
            'labels': torch.tensor([i.class_id for i in instances], dtype=torch.long),
        }

    def loss(self, outputs, targets, stage=2):
        """Softmax CE with hard negatives + alpha * box + beta * corners (stage 1: no corners)."""
        return corners_codec.loss_for_batch(outputs, targets, self.network_config, stage=stage,
                                            **self.loss_options)

    def decode(self, outputs):
        return corners_codec.decode_for_batch(outputs, self.network_config, **self.decoder)


METHODS = {'keypoints': KeypointsMethod, 'corners': CornersMethod}

# `--backbone NAME` per method -> the network config it sets.
BACKBONES = {
    'keypoints': {name: {'backbone': name} for name in
                  ('hrnet_w18', 'hrnet_w18_small', 'hrnet_tiny', 'efficientnet_lite0')},
    'corners': {'resnet50': {'backbone': 'resnet', 'depth': 50},
                'resnet34': {'backbone': 'resnet', 'depth': 34},
                'resnet18': {'backbone': 'resnet', 'depth': 18},
                'efficientnet_lite0': {'backbone': 'efficientnet_lite0'}},
}


def backbone_network_config(method, name):
    """The network config fields that `--backbone name` sets for `method`."""
    choices = BACKBONES.get(method, {})
    if name not in choices:
        raise Pose6dError(f'unknown backbone {name!r} for the {method} method; expected one of '
                          f'{", ".join(choices)}')
    return dict(choices[name])


def get_method(name, num_classes, network=None, decoder=None, loss=None):
    """The method object for `name` ('keypoints' or 'corners')."""
    if name not in METHODS:
        raise Pose6dError(f'unknown method {name!r}; expected one of {", ".join(METHODS)}')
    return METHODS[name](num_classes, network, decoder, loss)


def _dataclass_from(cls, values, where):
    return cls(**dataclass_kwargs(cls, values, where))
