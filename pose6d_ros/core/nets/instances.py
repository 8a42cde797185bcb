"""What every network decoder returns: keypoint instances in network-input pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class KeypointInstance:
    """One decoded object instance, in network-input pixels, before PnP."""

    class_id: int
    keypoints: np.ndarray      # (9, 2) 8 box corners + centre; NaN where not found
    confidence: np.ndarray     # (9,) per-keypoint confidence; 0 where not found (PnP weights)
    score: float               # instance confidence in [0, 1]
    box: np.ndarray | None = None  # (4,) x_min, y_min, x_max, y_max when the network has one
