"""HRPose targets and decoding: belief maps + corner-to-centroid vector fields <-> keypoints.

Per object class, 9 belief maps (a Gaussian around each keypoint: 8 box corners, then the
centroid, in the order of geometry.py) and 8 two-channel vector fields (near corner k, the unit
vector from corner k towards the centroid; zero elsewhere), as in DOPE and HRPose.

Map pixel (i, j) is centred on network-input pixel
((j + 0.5) * stride - 0.5, (i + 0.5) * stride - 0.5): the package's pixel-centre convention.
Layout is class-major: belief channels [c * 9, c * 9 + 9), vector channels
[c * 16, c * 16 + 16) as (dx, dy) per corner.

Decoding runs on the maps' device with tensor operations only (no per-pixel Python loops):
local maxima above a threshold (3x3 max-pool NMS) with a sub-pixel log-parabola fit (exact
for a Gaussian), then each corner joins the centroid its vector field points at, within an
angular threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pose6d_ros.core.nets.instances import KeypointInstance

NUM_KEYPOINTS = 9
NUM_CORNERS = 8
CENTROID = 8


@dataclass
class CodecConfig:
    stride: int = 4                  # network input pixels per map pixel
    sigma: float = 2.0               # Gaussian sigma of the belief maps, map pixels
    vector_radius: float = 3.0       # vector fields are set within this radius of a corner, map px
    peak_threshold: float = 0.1      # minimum belief of a keypoint peak
    angle_threshold_deg: float = 30.0  # a corner joins a centroid its field points at within this
    min_keypoints: int = 5           # fewer keypoints (centroid included): instance dropped
    # At most this many instances per class and image: the strongest centroid peaks, each
    # matched among the strongest 2x as many peaks of every corner. Bounds the decoding time
    # whatever the maps hold (an untrained or confused network's noise gives thousands of
    # peaks: 0.45-0.6 s a frame at 640x480 without it).
    max_instances: int = 20


def to_map(points, stride):
    """Network-input pixels -> map pixels (same pixel-centre convention)."""
    return (points + 0.5) / stride - 0.5


def from_map(points, stride):
    """Map pixels -> network-input pixels."""
    return (points + 0.5) * stride - 0.5


def encode(instances, num_classes, map_height, map_width, config=None):
    """Target maps for one image.

    instances: list of (class_id, keypoints (9, 2) in network-input pixels).
    Returns belief (num_classes * 9, h, w) and vectors (num_classes * 16, h, w) float32 numpy
    arrays. Overlapping Gaussians of one map combine by maximum; where two instances' corner
    discs overlap, the nearer corner wins.
    """
    config = config or CodecConfig()
    belief = np.zeros((num_classes * NUM_KEYPOINTS, map_height, map_width), np.float32)
    vectors = np.zeros((num_classes * NUM_CORNERS * 2, map_height, map_width), np.float32)
    nearest = np.full((num_classes * NUM_CORNERS, map_height, map_width), np.inf, np.float32)
    ys, xs = np.mgrid[0:map_height, 0:map_width].astype(np.float32)
    reach = 3.0 * config.sigma
    for class_id, keypoints in instances:
        points = to_map(np.asarray(keypoints, dtype=np.float64), config.stride)
        centroid = points[CENTROID]
        for k, (x, y) in enumerate(points):
            if not np.isfinite([x, y]).all():
                continue
            window = _window(x, y, reach, map_height, map_width)
            if window is None:
                continue
            rows, cols = window
            d2 = (xs[rows, cols] - x) ** 2 + (ys[rows, cols] - y) ** 2
            channel = belief[class_id * NUM_KEYPOINTS + k]
            channel[rows, cols] = np.maximum(channel[rows, cols],
                                             np.exp(-d2 / (2.0 * config.sigma ** 2)))
            if k == CENTROID or not np.isfinite(centroid).all():
                continue
            direction = centroid - (x, y)
            norm = np.linalg.norm(direction)
            if norm < 1e-6:
                continue
            window = _window(x, y, config.vector_radius, map_height, map_width)
            if window is None:
                continue
            rows, cols = window
            d2 = (xs[rows, cols] - x) ** 2 + (ys[rows, cols] - y) ** 2
            corner = class_id * NUM_CORNERS + k
            take = (d2 <= config.vector_radius ** 2) & (d2 < nearest[corner][rows, cols])
            nearest[corner][rows, cols][take] = d2[take]
            for axis in range(2):
                field = vectors[2 * corner + axis][rows, cols]
                field[take] = direction[axis] / norm
                vectors[2 * corner + axis][rows, cols] = field
    return belief, vectors


def _window(x, y, radius, height, width):
    x0, x1 = max(int(np.floor(x - radius)), 0), min(int(np.ceil(x + radius)) + 1, width)
    y0, y1 = max(int(np.floor(y - radius)), 0), min(int(np.ceil(y + radius)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def find_peaks(belief, threshold):
    """Local maxima of belief maps (B, K, h, w) above threshold, with sub-pixel positions.

    Returns (batch index, channel, x, y, value) as 1D tensors on the maps' device.
    """
    pooled = F.max_pool2d(belief, kernel_size=3, stride=1, padding=1)
    is_peak = (belief == pooled) & (belief > threshold)
    b, k, row, col = torch.nonzero(is_peak, as_tuple=True)
    value = belief[b, k, row, col]
    h, w = belief.shape[-2:]

    def neighbour(dr, dc):
        r = (row + dr).clamp(0, h - 1)
        c = (col + dc).clamp(0, w - 1)
        return belief[b, k, r, c]

    dx = _parabola_offset(neighbour(0, -1), value, neighbour(0, 1))
    dy = _parabola_offset(neighbour(-1, 0), value, neighbour(1, 0))
    return b, k, col.to(belief.dtype) + dx, row.to(belief.dtype) + dy, value


def _parabola_offset(left, centre, right):
    """Vertex of the parabola through the logs of three samples: exact for a Gaussian."""
    eps = 1e-6
    log_l, log_c, log_r = (torch.log(v.clamp_min(eps)) for v in (left, centre, right))
    denominator = log_l - 2.0 * log_c + log_r
    offset = 0.5 * (log_l - log_r) / torch.where(denominator.abs() > 1e-9, denominator,
                                                 torch.full_like(denominator, -1e9))
    return offset.clamp(-0.5, 0.5)


def _strongest(indices, value, count):
    """The `count` indices of highest value (all of them if fewer), strongest first."""
    if len(indices) <= count:
        return indices
    return indices[np.argsort(-value[indices], kind='stable')[:count]]


def decode(belief, vectors, num_classes, config=None):
    """Keypoint instances for each image of a batch.

    An instance's score is the mean belief of its found keypoints times the found fraction.

    belief: (B, num_classes * 9, h, w); vectors: (B, num_classes * 16, h, w).
    Returns a list (one per image) of lists of KeypointInstance, keypoints in input pixels.
    """
    config = config or CodecConfig()
    belief = belief.detach().float()
    vectors = vectors.detach().float()
    batch = belief.shape[0]
    b, channel, x, y, value = find_peaks(belief, config.peak_threshold)
    class_of, keypoint_of = channel // NUM_KEYPOINTS, channel % NUM_KEYPOINTS
    # Vector field at every corner peak (nearest map pixel), as unit directions.
    field_channel = class_of * (2 * NUM_CORNERS) + 2 * keypoint_of.clamp(max=NUM_CORNERS - 1)
    row = y.round().long().clamp(0, belief.shape[-2] - 1)
    col = x.round().long().clamp(0, belief.shape[-1] - 1)
    field = torch.stack([vectors[b, field_channel, row, col],
                         vectors[b, field_channel + 1, row, col]], dim=1)
    field = F.normalize(field, dim=1)
    cos_limit = float(np.cos(np.radians(config.angle_threshold_deg)))

    # One transfer to the host for the whole batch (indices are exact in float32), then
    # grouping on small arrays.
    packed = torch.stack([b.float(), class_of.float(), keypoint_of.float(), x.float(),
                          y.float(), value.float(), field[:, 0], field[:, 1]], 1).cpu().numpy()
    b, class_of, keypoint_of = (packed[:, i].astype(np.int64) for i in range(3))
    x, y, value, field = packed[:, 3], packed[:, 4], packed[:, 5], packed[:, 6:8]
    corner = keypoint_of < NUM_CORNERS
    results = [[] for _ in range(batch)]
    for image in range(batch):
        in_image = b == image
        for class_id in np.unique(class_of[in_image]):
            mine = in_image & (class_of == class_id)
            centroids = _strongest(np.flatnonzero(mine & (keypoint_of == CENTROID)), value,
                                   config.max_instances)
            if not len(centroids):
                continue
            keypoints = np.full((len(centroids), NUM_KEYPOINTS, 2), np.nan)
            confidence = np.zeros((len(centroids), NUM_KEYPOINTS))
            keypoints[:, CENTROID] = np.stack([x[centroids], y[centroids]], 1)
            confidence[:, CENTROID] = value[centroids]
            best_cos = np.full((len(centroids), NUM_KEYPOINTS), -2.0)
            for k in range(NUM_CORNERS):
                corners = _strongest(np.flatnonzero(mine & (keypoint_of == k) & corner), value,
                                     2 * config.max_instances)
                if not len(corners):
                    continue
                to_centroid = np.stack([x[centroids], y[centroids]], 1)[None] - np.stack(
                    [x[corners], y[corners]], 1)[:, None]          # (corners, centroids, 2)
                to_centroid /= np.linalg.norm(to_centroid, axis=2, keepdims=True) + 1e-9
                cos = (to_centroid * field[corners][:, None]).sum(axis=2)  # (corners, centroids)
                choice = cos.argmax(axis=1)
                for i, j in enumerate(choice):
                    # Each centroid keeps the corner whose field agrees with it best.
                    if cos[i, j] >= cos_limit and cos[i, j] > best_cos[j, k]:
                        best_cos[j, k] = cos[i, j]
                        keypoints[j, k] = (x[corners[i]], y[corners[i]])
                        confidence[j, k] = value[corners[i]]
            for j in range(len(centroids)):
                found = confidence[j] > 0
                if found.sum() < config.min_keypoints:
                    continue
                score = float(confidence[j][found].mean() * found.mean())
                results[image].append(KeypointInstance(
                    int(class_id), from_map(keypoints[j], config.stride), confidence[j], score))
    return results
