"""The networks a bundle can name, and how to rebuild each from its stored config."""

from __future__ import annotations

from pose6d_ros.core.nets.corners import CornersNet
from pose6d_ros.core.nets.hrpose import HRPose

METHODS = ('keypoints', 'corners')


def build_network(method, config):
    """A fresh network of `method` ('keypoints' or 'corners') from its config dict."""
    if method == 'keypoints':
        return HRPose.from_config_dict(config)
    if method == 'corners':
        return CornersNet.from_config_dict(config)
    raise ValueError(f'unknown method {method!r}; expected one of {", ".join(METHODS)}')
