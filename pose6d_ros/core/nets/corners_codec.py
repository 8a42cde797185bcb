"""Targets, loss and decoding of the corners network (Zhang, Jiang, Zhang; SSD MultiBox).

Boxes are (x_min, y_min, x_max, y_max) in network-input pixels, origin at the centre of the
top-left pixel; width = x_max - x_min. Class labels inside this module are 0 = background and
c + 1 for object class c; the ground truth and the decoded instances use the object class c.

Matching (SSD): every ground-truth box gets the anchor of highest IoU with it, and every anchor
whose best IoU is >= `iou_threshold` (0.5) is a positive of that box; all other anchors are
negatives (no ignore band, as SSD). When two boxes share their best anchor one of them wins it.

Box deltas (SSD / Faster R-CNN with variances v = (0.1, 0.2)):
    t_x = (g_cx - a_cx) / a_w / v0,  t_y = (g_cy - a_cy) / a_h / v0,
    t_w = log(g_w / a_w) / v1,       t_h = log(g_h / a_h) / v1.

Corner offsets, 16 per anchor (dx, dy of corner 0, corner 1, ...), relative to a reference box
R: dx = (T_x - R_cx) / R_w, dy = (T_y - R_cy) / R_h (the paper's eq. 4, no variance: corners
spanning their box lie within +-0.5 already).
- 'indirect' (the paper): R is "the regressed box". At decode time that is the box decoded from
  the same anchor's deltas. At encode time it is, by default (`corner_target_box='gt'`), the
  ground-truth box of the matched object: the target is then independent of the current box
  prediction, identical for all anchors of an object, and equals the paper's target once the box
  regression has converged; with perfect boxes decode inverts encode exactly. The literal reading
  (`'predicted'`: the anchor's own decoded box, detached) is there too; its targets move with
  the prediction and are garbage until the boxes are learnt, which is what the paper's
  detection-only first stage is for.
- 'direct' (the ablation, "with respect to the centers of anchor boxes"): R is the anchor.
Reference sizes are clamped to >= 1 px on both sides of the codec.

Loss: L = (sum_{pos+neg} CE + alpha sum_pos smoothL1(box) + beta sum_pos smoothL1(corners)) / N,
with N the number of positives in the batch (at least 1), alpha = 1, beta = 10, softmax
cross-entropy, hard negatives mined per image at 3 per positive (the highest background losses).
An image without objects still contributes its 3 hardest negatives (SSD would take none), so
background-only images teach the detector something; its box and corner terms are exactly 0.
Stage 1 of the paper's schedule drops the corner term (weight 0, so the corner head stays in
the graph with zero gradients, as DDP wants); stage 2 is the full loss. Missing corners
(NaN) are left out of the corner term. A ground truth whose box is NaN uses the tight box of its
finite corners; one smaller than 1 px, or without any finite box, is dropped.

Decoding (the paper): softmax; every (anchor, class) pair with score > 0.01, the 400 best; NMS
at IoU 0.45 per class over all levels together; at most `max_detections` (100) per image.
`nms` is greedy NMS computed as a fixed point on the IoU matrix (Cluster-NMS, Zheng et al.
2020: the same result as the sequential loop, in a few vectorised iterations on any device);
`batched_nms` shifts each class's boxes to its own region of the plane so one call separates
the classes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
import math

import numpy as np
import torch
import torch.nn.functional as F

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.nets.corners_anchors import CornersConfig
from pose6d_ros.core.nets.instances import KeypointInstance

NUM_CORNERS = 8
LOG_SIZE_CLAMP = math.log(1000.0 / 16)  # detectron2's limit on exp() of a size delta
MIN_BOX_SIZE = 1.0  # px: smaller ground truth is dropped; reference sizes are clamped to this


@dataclass
class LossConfig:
    """Training options of the loss (the paper's values)."""

    iou_threshold: float = 0.5      # anchors with IoU >= this to a box are its positives
    neg_pos_ratio: float = 3.0      # hard negatives per positive, per image (at least 1 positive)
    alpha: float = 1.0              # weight of the box term
    beta: float = 10.0              # weight of the corner term
    smooth_l1_beta: float = 1.0     # transition point of the smooth-L1 (Fast R-CNN / SSD)
    corner_target_box: str = 'gt'   # indirect targets relative to the 'gt' or 'predicted' box

    def __post_init__(self):
        _check(0.0 < self.iou_threshold <= 1.0, 'iou_threshold', 'in (0, 1]', self.iou_threshold)
        _check(self.neg_pos_ratio >= 0, 'neg_pos_ratio', '>= 0', self.neg_pos_ratio)
        _check(self.alpha >= 0 and self.beta >= 0, 'alpha/beta', '>= 0', (self.alpha, self.beta))
        _check(self.smooth_l1_beta > 0, 'smooth_l1_beta', '> 0', self.smooth_l1_beta)
        _check(self.corner_target_box in ('gt', 'predicted'), 'corner_target_box',
               "'gt' or 'predicted'", self.corner_target_box)


@dataclass
class DecodeConfig:
    """Inference options (the paper's values)."""

    score_threshold: float = 0.01   # per-class softmax score a candidate must exceed
    pre_nms_top_k: int = 400        # best candidates per image kept before NMS
    nms_threshold: float = 0.45     # IoU above which a lower-scored box of its class goes
    max_detections: int = 100       # per image, after NMS

    def __post_init__(self):
        _check(0.0 <= self.score_threshold < 1.0, 'score_threshold', 'in [0, 1)',
               self.score_threshold)
        _check(self.pre_nms_top_k >= 1, 'pre_nms_top_k', '>= 1', self.pre_nms_top_k)
        _check(0.0 < self.nms_threshold <= 1.0, 'nms_threshold', 'in (0, 1]', self.nms_threshold)
        _check(self.max_detections >= 1, 'max_detections', '>= 1', self.max_detections)


def _check(ok, name, expected, value):
    if not ok:
        raise Pose6dError(f'corners option {name} must be {expected}, got {value!r}')


def _options(cls, options):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise Pose6dError(f'unknown corners option(s) {", ".join(unknown)}; expected some of '
                          f'{", ".join(sorted(known))}')
    return cls(**options)


def decode_options(options):
    """A DecodeConfig from itself, a dict of its fields or None (defaults); refuses unknowns."""
    return options if isinstance(options, DecodeConfig) else _options(DecodeConfig, options or {})


def network_config(config, outputs=None):
    """The CornersConfig of a config, its dict, or (None) of the outputs' class count."""
    if config is None and outputs is not None:
        # Only right for a network with the default codec fields (see loss_for_batch).
        return CornersConfig(num_classes=outputs['scores'].shape[-1] - 1)
    if isinstance(config, CornersConfig):
        return config
    if isinstance(config, dict):
        return CornersConfig.from_dict(config)
    raise TypeError(f'expected a CornersConfig or its dict, got {type(config).__name__}')


# --- boxes ---------------------------------------------------------------------------------

def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The IoU (N, M) of boxes a (N, 4) and b (M, 4); 0 where both are empty."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])        # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)          # (N, M)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)


def _centre_size(boxes):
    return (boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]


def encode_boxes(anchors: torch.Tensor, boxes: torch.Tensor,
                 variances=(0.1, 0.2)) -> torch.Tensor:
    """SSD deltas (..., 4) of boxes (..., 4) w.r.t. anchors (..., 4)."""
    a_c, a_wh = _centre_size(anchors)
    g_c, g_wh = _centre_size(boxes)
    return torch.cat([(g_c - a_c) / a_wh / variances[0],
                      torch.log(g_wh / a_wh) / variances[1]], -1)


def decode_boxes(anchors: torch.Tensor, deltas: torch.Tensor,
                 variances=(0.1, 0.2)) -> torch.Tensor:
    """Inverse of `encode_boxes`; size deltas are clamped so exp() cannot overflow."""
    a_c, a_wh = _centre_size(anchors)
    centre = a_c + deltas[..., :2] * variances[0] * a_wh
    size = a_wh * torch.exp((deltas[..., 2:] * variances[1]).clamp(max=LOG_SIZE_CLAMP))
    return torch.cat([centre - size / 2, centre + size / 2], -1)


def encode_corners(reference: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """Offsets (..., 16) of corners (..., 8, 2) from reference boxes (..., 4) (eq. 4).

    dx = (T_x - R_cx) / R_w, dy = (T_y - R_cy) / R_h, corner by corner.
    """
    centre, size = _centre_size(reference)
    size = size.clamp(min=MIN_BOX_SIZE)
    return ((corners - centre[..., None, :]) / size[..., None, :]).flatten(-2)


def decode_corners(reference: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Inverse of `encode_corners`: corners (..., 8, 2) in pixels."""
    centre, size = _centre_size(reference)
    size = size.clamp(min=MIN_BOX_SIZE)
    offsets = offsets.unflatten(-1, (NUM_CORNERS, 2))
    return centre[..., None, :] + offsets * size[..., None, :]


# --- targets -------------------------------------------------------------------------------

def match_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor,
                  iou_threshold: float = 0.5) -> torch.Tensor:
    """Index (A,) of the ground-truth box each anchor is a positive of, -1 for negatives."""
    matched = torch.full((anchors.shape[0],), -1, dtype=torch.long, device=anchors.device)
    if gt_boxes.shape[0] == 0:
        return matched
    iou = box_iou(anchors, gt_boxes)                        # (A, N)
    best_iou, best_gt = iou.max(1)
    best_anchor = iou.argmax(0)                             # (N,) each box's own best anchor
    best_gt[best_anchor] = torch.arange(gt_boxes.shape[0], device=anchors.device)
    best_iou[best_anchor] = 2.0                             # forced positives
    return torch.where(best_iou >= iou_threshold, best_gt, matched)


def clean_targets(boxes, corners, labels, num_classes, device=None):
    """One image's ground truth as float32 boxes (N, 4), corners (N, 8, 2), long labels (N,).

    NaN boxes are replaced by the tight box of the finite corners; instances without a finite
    box, or smaller than 1 px, are dropped.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
    corners = torch.as_tensor(corners, dtype=torch.float32, device=device)
    if corners.numel() == 0:
        corners = corners.reshape(0, NUM_CORNERS, 2)
    elif corners.ndim == 2:  # flat (N, 16) or (N, 18)
        corners = corners.reshape(corners.shape[0], -1, 2)
    corners = corners[:, :NUM_CORNERS]  # 9 keypoints (corners + centre) -> the 8 corners
    labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
    if not (boxes.shape[0] == corners.shape[0] == labels.shape[0]):
        raise Pose6dError(f'corners targets disagree: {boxes.shape[0]} boxes, '
                          f'{corners.shape[0]} corner sets, {labels.shape[0]} labels')
    if corners.shape[1] != NUM_CORNERS:
        raise Pose6dError(f'corners targets need {NUM_CORNERS} corners per object, '
                          f'got {corners.shape[1]}')
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise Pose6dError(f'class ids must be in 0..{num_classes - 1} for a {num_classes}-class '
                          f'network, got {labels.tolist()}')
    finite = torch.isfinite(corners).all(-1, keepdim=True)              # (N, 8, 1)
    tight = torch.cat([torch.where(finite, corners, math.inf).amin(1),
                       torch.where(finite, corners, -math.inf).amax(1)], -1)
    boxes = torch.where(torch.isfinite(boxes).all(-1, keepdim=True), boxes, tight)
    keep = torch.isfinite(boxes).all(-1) & (boxes[:, 2:] - boxes[:, :2] >= MIN_BOX_SIZE).all(-1)
    return boxes[keep], corners[keep], labels[keep]


def encode_targets(anchors, boxes, corners, labels, config, iou_threshold=0.5):
    """Per-anchor targets for one image (cleaned ground truth, see `clean_targets`).

    Returns {'labels' (A,) 0 = background, 'boxes' (A, 4), 'corners' (A, 16),
    'corner_weights' (A, 16) 1 where the corner is known, 'matched' (A,) box index or -1}.
    Indirect corners are relative to the ground-truth box (see the module docstring).
    """
    config = network_config(config)
    matched = match_anchors(anchors, boxes, iou_threshold)
    pos = matched >= 0
    idx = matched.clamp(min=0)
    num_anchors = anchors.shape[0]
    out = {'labels': torch.zeros(num_anchors, dtype=torch.long, device=anchors.device),
           'boxes': anchors.new_zeros(num_anchors, 4),
           'corners': anchors.new_zeros(num_anchors, 2 * NUM_CORNERS),
           'corner_weights': anchors.new_zeros(num_anchors, 2 * NUM_CORNERS),
           'matched': matched}
    if not pos.any():
        return out
    out['labels'][pos] = labels[idx[pos]] + 1
    out['boxes'][pos] = encode_boxes(anchors[pos], boxes[idx[pos]], config.box_variances)
    reference = anchors[pos] if config.corner_mode == 'direct' else boxes[idx[pos]]
    target = encode_corners(reference, corners[idx[pos]])
    known = torch.isfinite(target)
    out['corners'][pos] = torch.where(known, target, 0.0)  # 0 * NaN would still be NaN
    out['corner_weights'][pos] = known.to(anchors.dtype)
    return out


def _per_image(targets, batch_size):
    """A list of per-image dicts from a list of dicts or a collated dict (lists or stacks)."""
    if isinstance(targets, dict):
        split = {}
        for key, value in targets.items():
            split[key] = list(value.unbind(0)) if isinstance(value, torch.Tensor) else value
            if len(split[key]) != batch_size:
                raise Pose6dError(f'corners targets {key!r} hold {len(split[key])} images, '
                                  f'the batch {batch_size}')
        return [{key: split[key][i] for key in split} for i in range(batch_size)]
    targets = list(targets)
    if len(targets) != batch_size:
        raise Pose6dError(f'{len(targets)} target sets for a batch of {batch_size}')
    return targets


# --- loss ----------------------------------------------------------------------------------

def corners_loss(outputs, targets, config=None, stage: int = 2, **options) -> dict:
    """The MultiBox loss with corners; every entry a tensor attached to the graph.

    outputs: CornersNet outputs (with 'anchors'). targets: per image {'boxes' (N, 4),
    'corners' (N, 8, 2) (or 'keypoints' (N, 9, 2)), 'labels' (N,) class ids}, as a list or as
    the collated dict. config: the network's CornersConfig or its dict (see `loss_for_batch`).
    Returns {'total', 'cls', 'box', 'corners', 'num_pos'}: the three terms are normalised by the
    number of positives but not weighted; 'total' weighs them (stage 1 leaves the corner term
    out).
    """
    if stage not in (1, 2):
        raise Pose6dError(f'corners loss stage must be 1 (detection) or 2 (full), got {stage}')
    config = network_config(config, outputs)
    opts = _options(LossConfig, options)
    scores = outputs['scores'].float()           # (B, A, C+1); fp32 under autocast too
    pred_boxes = outputs['boxes'].float()        # (B, A, 4)
    pred_corners = outputs['corners'].float()    # (B, A, 16)
    anchors = outputs['anchors'].to(scores.device, torch.float32)
    batch = scores.shape[0]

    encoded = []
    for t in _per_image(targets, batch):
        boxes, corners, labels = clean_targets(t['boxes'], t.get('corners', t.get('keypoints')),
                                               t['labels'], config.num_classes, scores.device)
        enc = encode_targets(anchors, boxes, corners, labels, config, opts.iou_threshold)
        enc['gt_corners'] = corners
        encoded.append(enc)
    labels = torch.stack([e['labels'] for e in encoded])                 # (B, A)
    box_targets = torch.stack([e['boxes'] for e in encoded])             # (B, A, 4)
    corner_targets = torch.stack([e['corners'] for e in encoded])        # (B, A, 16)
    corner_weights = torch.stack([e['corner_weights'] for e in encoded])  # (B, A, 16)
    pos = labels > 0
    num_pos = pos.sum(1)                                                  # (B,)

    if (stage == 2 and opts.corner_target_box == 'predicted'
            and config.corner_mode == 'indirect'):
        for b, enc in enumerate(encoded):
            p = pos[b]
            if p.any():
                reference = decode_boxes(anchors[p], pred_boxes[b, p].detach(),
                                         config.box_variances)
                target = encode_corners(reference, enc['gt_corners'][enc['matched'][p]])
                corner_targets[b, p] = torch.where(torch.isfinite(target), target, 0.0)

    # Hard negative mining: each image keeps its ratio * max(positives, 1) highest-loss
    # background anchors (rank by a double sort, as torchvision's SSD).
    ce = F.cross_entropy(scores.flatten(0, 1), labels.flatten(), reduction='none').view_as(labels)
    background_loss = torch.where(pos, -math.inf, ce.detach())
    rank = background_loss.argsort(1, descending=True).argsort(1)         # (B, A)
    num_neg = (opts.neg_pos_ratio * num_pos.clamp(min=1)).long()
    neg = (rank < num_neg[:, None]) & ~pos
    cls_loss = ce[pos | neg].sum()

    box_loss = F.smooth_l1_loss(pred_boxes[pos], box_targets[pos], reduction='sum',
                                beta=opts.smooth_l1_beta)
    corner_loss = (F.smooth_l1_loss(pred_corners[pos], corner_targets[pos], reduction='none',
                                    beta=opts.smooth_l1_beta) * corner_weights[pos]).sum()
    normaliser = num_pos.sum().clamp(min=1).to(scores.dtype)
    cls_loss, box_loss, corner_loss = (cls_loss / normaliser, box_loss / normaliser,
                                       corner_loss / normaliser)
    # Stage 1 keeps the corner term in the graph with weight 0: the corner head then gets zero
    # gradients instead of none, which DistributedDataParallel requires of every parameter.
    total = cls_loss + opts.alpha * box_loss + (opts.beta if stage == 2 else 0.0) * corner_loss
    return {'total': total, 'cls': cls_loss, 'box': box_loss, 'corners': corner_loss,
            'num_pos': num_pos.sum()}


def loss_for_batch(outputs, targets, config=None, stage: int = 2, **options):
    """(total loss, {'cls', 'box', 'corners', 'num_pos'} detached) for the training loop.

    config: the network's CornersConfig or its dict. Pass it: without it the codec fields take
    their defaults (indirect corners, variances (0.1, 0.2)), wrong for a network built with
    others. options: the fields of LossConfig.
    """
    parts = corners_loss(outputs, targets, config, stage=stage, **options)
    total = parts.pop('total')
    return total, {k: v.detach() for k, v in parts.items()}


# --- decoding ------------------------------------------------------------------------------

def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    A box goes when a kept box of higher score overlaps it with IoU > iou_threshold. Computed as
    the fixed point of keep_j = not any_i<j (keep_i and IoU_ij > t) over the score-sorted IoU
    matrix, iterated from "keep all": iteration n settles the n best boxes, so it ends with the
    sequential result, usually after a few iterations. O(K^2) memory: meant for the <= 400
    candidates of an image.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True, stable=True)
    sorted_boxes = boxes[order]
    suppresses = (box_iou(sorted_boxes, sorted_boxes) > iou_threshold).triu(diagonal=1)
    keep = torch.ones(order.shape[0], dtype=torch.bool, device=boxes.device)
    for _ in range(order.shape[0]):
        new_keep = ~(suppresses & keep[:, None]).any(0)
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor,
                iou_threshold: float) -> torch.Tensor:
    """NMS within each class only, in one `nms` call.

    The boxes of class c are shifted by c * (extent + 1), so boxes of different classes never
    overlap.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    low = boxes.min()
    extent = boxes.max() - low
    shifted = boxes - low + (classes.to(boxes.dtype) * (extent + 1))[:, None]
    return nms(shifted, scores, iou_threshold)


def decode_image(scores, boxes, corners, anchors, config, options=None) -> dict:
    """Detections of one image as tensors on the outputs' device.

    scores (A, C+1) logits, boxes (A, 4), corners (A, 16), anchors (A, 4) -> {'boxes' (D, 4),
    'corners' (D, 8, 2), 'scores' (D,), 'classes' (D,) object class ids}, best score first.
    """
    config = network_config(config)
    opts = decode_options(options)
    num_classes = scores.shape[-1] - 1
    probs = scores.float().softmax(-1)[:, 1:].flatten()       # (A * C,) anchor-major
    top_scores, top = probs.topk(min(opts.pre_nms_top_k, probs.numel()))
    above = top_scores > opts.score_threshold
    top_scores, top = top_scores[above], top[above]
    anchor_idx, classes = top // num_classes, top % num_classes
    det_anchors = anchors[anchor_idx].float()
    det_boxes = decode_boxes(det_anchors, boxes[anchor_idx].float(), config.box_variances)
    reference = det_boxes if config.corner_mode == 'indirect' else det_anchors
    det_corners = decode_corners(reference, corners[anchor_idx].float())
    keep = batched_nms(det_boxes, top_scores, classes, opts.nms_threshold)
    keep = keep[:opts.max_detections]
    return {'boxes': det_boxes[keep], 'corners': det_corners[keep],
            'scores': top_scores[keep], 'classes': classes[keep]}


def to_instances(detections: dict, use_centre_as_ninth: bool = False) -> list[KeypointInstance]:
    """`decode_image` tensors -> KeypointInstance list (numpy, one device-to-host copy)."""
    n = detections['scores'].shape[0]
    packed = torch.cat([detections['boxes'].reshape(n, 4),
                        detections['corners'].reshape(n, 2 * NUM_CORNERS),
                        detections['scores'].reshape(n, 1).float(),
                        detections['classes'].reshape(n, 1).float()], 1)
    packed = packed.detach().cpu().double().numpy()
    instances = []
    for row in packed:
        box, score = row[:4].copy(), float(row[20])
        keypoints = np.full((NUM_CORNERS + 1, 2), np.nan)
        keypoints[:NUM_CORNERS] = row[4:20].reshape(NUM_CORNERS, 2)
        if use_centre_as_ninth:
            keypoints[NUM_CORNERS] = (box[:2] + box[2:]) / 2
        confidence = np.where(np.isfinite(keypoints).all(1), score, 0.0)
        instances.append(KeypointInstance(class_id=int(row[21]), keypoints=keypoints,
                                          confidence=confidence, score=score, box=box))
    return instances


def decode_for_batch(outputs, config=None, **options) -> list[list[KeypointInstance]]:
    """Per image, its detections as KeypointInstance (network-input pixels), best first.

    Keypoints are the 8 decoded corners, then the 2D box centre when the config's
    `use_centre_as_ninth` (it is the centre of the 2D box, not the projection of the 3D box
    centre: close for small or distant objects, biased under strong perspective) or NaN.
    config: as for `loss_for_batch` (pass it). options: the fields of DecodeConfig.
    """
    config = network_config(config, outputs)
    opts = decode_options(options)
    anchors = outputs['anchors']
    results = []
    with torch.no_grad():
        for scores, boxes, corners in zip(outputs['scores'], outputs['boxes'],
                                          outputs['corners']):
            detections = decode_image(scores, boxes, corners, anchors, config, opts)
            results.append(to_instances(detections, config.use_centre_as_ninth))
    return results
