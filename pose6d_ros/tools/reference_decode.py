"""Post-processing as research code usually writes it: maps to the host, Python loops per object.

The benchmark's eager-fp32 reference (`pose6d bench`) decodes with these instead of the
package's tensor decoders, so its speed-up measures the whole inference path: autocast,
folded BatchNorm, channels-last and compilation on the network, and decoding with tensor
operations and one host transfer per batch. They compute the same instances (a test checks
it): every output tensor is copied to the host on its own, and peaks, grouping and NMS are
loops over channels, peaks and boxes, as in DOPE's or SSD's reference implementations.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
import torch

from pose6d_ros.core.geometry.metrics import iou_2d
from pose6d_ros.core.nets import corners_codec
from pose6d_ros.core.nets.instances import KeypointInstance
from pose6d_ros.core.nets.keypoint_codec import CENTROID, from_map, NUM_CORNERS, NUM_KEYPOINTS


class PythonDecoding:
    """A method whose `decode` is the loop version; everything else is the wrapped method's."""

    def __init__(self, method):
        self._method = method

    def __getattr__(self, name):
        """Everything but `decode` is the wrapped method's."""
        return getattr(self._method, name)

    def decode(self, outputs):
        """Per image, a list of KeypointInstance, as the wrapped method's `decode`."""
        if self._method.name == 'keypoints':
            return decode_keypoints(outputs['belief'], outputs['vectors'],
                                    self._method.num_classes, self._method.codec)
        return decode_corners(
            outputs, corners_codec.network_config(self._method.network_config, outputs),
            corners_codec.decode_options(self._method.decoder))


def decode_keypoints(belief, vectors, num_classes, codec):
    """keypoint_codec.decode, with per-channel peaks and per-peak grouping in Python."""
    results = []
    for b in range(belief.shape[0]):
        instances = []
        for class_id in range(num_classes):
            peaks = []  # per keypoint: [(x, y, value, field)]
            for k in range(NUM_KEYPOINTS):
                channel = belief[b, class_id * NUM_KEYPOINTS + k].detach().float().cpu().numpy()
                field = None
                if k < NUM_CORNERS:
                    first = class_id * 2 * NUM_CORNERS + 2 * k
                    field = vectors[b, first:first + 2].detach().float().cpu().numpy()
                peaks.append(_channel_peaks(channel, field, codec.peak_threshold))
            instances += _group(class_id, peaks, codec)
        results.append(instances)
    return results


def _channel_peaks(channel, field, threshold):
    height, width = channel.shape
    pooled = ndimage.maximum_filter(channel, size=3, mode='nearest')
    found = []
    for row, col in zip(*np.nonzero((channel == pooled) & (channel > threshold))):
        value = float(channel[row, col])
        left, right = channel[row, max(col - 1, 0)], channel[row, min(col + 1, width - 1)]
        up, down = channel[max(row - 1, 0), col], channel[min(row + 1, height - 1), col]
        x = col + _parabola(float(left), value, float(right))
        y = row + _parabola(float(up), value, float(down))
        direction = None
        if field is not None:
            r = min(max(int(round(y)), 0), height - 1)
            c = min(max(int(round(x)), 0), width - 1)
            dx, dy = float(field[0, r, c]), float(field[1, r, c])
            norm = max(math.hypot(dx, dy), 1e-12)
            direction = (dx / norm, dy / norm)
        found.append((x, y, value, direction))
    return found


def _parabola(left, centre, right):
    logs = [math.log(max(v, 1e-6)) for v in (left, centre, right)]
    denominator = logs[0] - 2.0 * logs[1] + logs[2]
    if abs(denominator) <= 1e-9:
        return 0.0
    return min(max(0.5 * (logs[0] - logs[2]) / denominator, -0.5), 0.5)


def _group(class_id, peaks, codec):
    centroids = peaks[CENTROID]
    cos_limit = math.cos(math.radians(codec.angle_threshold_deg))
    instances = []
    chosen = [[None] * NUM_CORNERS for _ in centroids]   # (x, y, value, cos) per corner
    for k in range(NUM_CORNERS):
        for x, y, value, (fx, fy) in peaks[k]:
            best, best_cos = None, -2.0
            for j, (cx, cy, _value, _field) in enumerate(centroids):
                norm = math.hypot(cx - x, cy - y) + 1e-9
                cos = ((cx - x) * fx + (cy - y) * fy) / norm
                if cos > best_cos:
                    best, best_cos = j, cos
            if best is not None and best_cos >= cos_limit and (
                    chosen[best][k] is None or best_cos > chosen[best][k][3]):
                chosen[best][k] = (x, y, value, best_cos)
    for (cx, cy, value, _field), corners in zip(centroids, chosen):
        keypoints = np.full((NUM_KEYPOINTS, 2), np.nan)
        confidence = np.zeros(NUM_KEYPOINTS)
        keypoints[CENTROID], confidence[CENTROID] = (cx, cy), value
        for k, corner in enumerate(corners):
            if corner is not None:
                keypoints[k], confidence[k] = corner[:2], corner[2]
        found = confidence > 0
        if found.sum() < codec.min_keypoints:
            continue
        instances.append(KeypointInstance(class_id, from_map(keypoints, codec.stride),
                                          confidence, float(confidence[found].mean()
                                                            * found.mean())))
    return instances


def decode_corners(outputs, config, options):
    """corners_codec.decode_for_batch, with a per-box Python NMS loop on the host."""
    anchors = outputs['anchors'].detach().float().cpu()
    results = []
    for scores, boxes, corners in zip(outputs['scores'], outputs['boxes'], outputs['corners']):
        probs = scores.detach().float().cpu().softmax(-1)[:, 1:].numpy()
        num_classes = probs.shape[1]
        flat = probs.ravel()
        order = np.argsort(-flat, kind='stable')[:options.pre_nms_top_k]
        order = order[flat[order] > options.score_threshold]
        anchor_idx = torch.from_numpy(order // num_classes)
        host_boxes = boxes.detach().float().cpu()[anchor_idx]
        host_corners = corners.detach().float().cpu()[anchor_idx]
        det_boxes = corners_codec.decode_boxes(anchors[anchor_idx], host_boxes,
                                               config.box_variances)
        reference = det_boxes if config.corner_mode == 'indirect' else anchors[anchor_idx]
        det_corners = corners_codec.decode_corners(reference, host_corners).numpy()
        det_boxes = det_boxes.numpy()
        kept = []
        for i in range(len(order)):  # greedy NMS, best score first, within each class
            if all(order[i] % num_classes != order[j] % num_classes
                   or iou_2d(det_boxes[i], det_boxes[j]) <= options.nms_threshold for j in kept):
                kept.append(i)
        instances = []
        for i in kept[:options.max_detections]:
            score = float(flat[order[i]])
            keypoints = np.full((NUM_KEYPOINTS, 2), np.nan)
            keypoints[:NUM_CORNERS] = det_corners[i].reshape(NUM_CORNERS, 2)
            box = det_boxes[i].astype(np.float64)
            if config.use_centre_as_ninth:
                keypoints[CENTROID] = (box[:2] + box[2:]) / 2
            confidence = np.where(np.isfinite(keypoints).all(1), score, 0.0)
            instances.append(KeypointInstance(int(order[i] % num_classes), keypoints,
                                              confidence, score, box))
        results.append(instances)
    return results
