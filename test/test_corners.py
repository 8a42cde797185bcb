"""Corners network (Zhang et al.).

Codec round trips down to PnP, loss invariants, gradients, ablation switches, NMS against a
brute-force reference, ImageNet loading, a learning smoke test.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.pnp import solve_pnp
from pose6d_ros.core.geometry.poses import (
    box_2d,
    box_keypoints,
    Pose,
    project_points,
    rotation_angle_deg,
)
from pose6d_ros.core.nets.corners import CornersNet
from pose6d_ros.core.nets.corners_anchors import (
    anchor_shapes,
    CornersConfig,
    level_strides,
    make_anchors,
    PAPER_ANCHOR_SIZES,
)
from pose6d_ros.core.nets.corners_codec import (
    batched_nms,
    box_iou,
    clean_targets,
    corners_loss,
    decode_boxes,
    decode_corners,
    decode_for_batch,
    encode_boxes,
    encode_corners,
    encode_targets,
    loss_for_batch,
    nms,
)
from pose6d_ros.core.nets.registry import build_network
from pose6d_ros.core.nets.resnet import ResNet

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: thread synchronisation costs more than it saves.

    It also explodes when other processes share the cores (seconds per step instead of
    milliseconds).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**kwargs):
    values = {'depth': 18, 'backbone_width': 8, 'fpn_channels': 16, 'num_classes': 2,
              'input_size': (64, 64)}
    values.update(kwargs)
    return CornersConfig(**values)


def tiny(**kwargs):
    torch.manual_seed(0)
    return CornersNet(tiny_config(**kwargs))


def box_with_corners(x0, y0, x1, y1):
    """A box and 8 'corners' spread over it the way a projected cuboid's would be."""
    t = torch.tensor([[0.05 + 0.6 * (k >> 2 & 1) + 0.3 * (k & 1), 0.1 + 0.7 * (k >> 1 & 1)]
                      for k in range(8)])
    corners = torch.tensor([x0, y0]) + t * torch.tensor([x1 - x0, y1 - y0])
    return corners


def targets_of(objects):
    """Per-image target dict from [(class_id, (x0, y0, x1, y1)), ...]."""
    boxes = torch.tensor([b for _, b in objects], dtype=torch.float32).reshape(-1, 4)
    corners = torch.stack([box_with_corners(*b) for _, b in objects]) if objects else \
        torch.zeros(0, 8, 2)
    return {'boxes': boxes, 'corners': corners,
            'labels': torch.tensor([c for c, _ in objects], dtype=torch.long)}


# --- codec round trips ---------------------------------------------------------------------

@pytest.mark.parametrize('device', DEVICES)
def test_box_and_corner_codecs_invert_each_other(device):
    g = torch.Generator().manual_seed(0)
    anchors = torch.rand(200, 2, generator=g) * 300
    anchors = torch.cat([anchors, anchors + 5 + torch.rand(200, 2, generator=g) * 200], 1)
    boxes = torch.rand(200, 2, generator=g) * 300
    boxes = torch.cat([boxes, boxes + 2 + torch.rand(200, 2, generator=g) * 200], 1)
    corners = torch.rand(200, 8, 2, generator=g) * 400 - 50
    anchors, boxes, corners = anchors.to(device), boxes.to(device), corners.to(device)
    deltas = encode_boxes(anchors, boxes, (0.1, 0.2))
    assert torch.allclose(decode_boxes(anchors, deltas, (0.1, 0.2)), boxes, atol=1e-3)
    for reference in (anchors, boxes):
        offsets = encode_corners(reference, corners)
        assert offsets.shape == (200, 16)
        assert torch.allclose(decode_corners(reference, offsets), corners, atol=1e-3)
    # dx of corner k is (T_x - B_cx) / B_w, the paper's eq. 4
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    assert torch.allclose(encode_corners(boxes, corners)[:, 6:8],
                          (corners[:, 3] - centre) / size, atol=1e-5)


def scene(camera):
    """Three objects of two classes at known poses; the class-0 and class-1 boxes overlap."""
    sizes = {0: ((-0.05, -0.03, -0.02), (0.05, 0.03, 0.02)),
             1: ((-0.03, -0.04, -0.035), (0.03, 0.04, 0.035))}
    placed = [(0, Pose.from_rotvec([0.3, -0.5, 0.2], [-0.03, -0.02, 0.45])),
              (1, Pose.from_rotvec([-0.6, 0.2, 1.0], [-0.015, -0.005, 0.47])),
              (0, Pose.from_rotvec([1.2, 0.4, -0.3], [0.06, 0.06, 0.5]))]
    objects = []
    for class_id, pose in placed:
        points = box_keypoints(*sizes[class_id])
        pixels = project_points(points, pose, camera)
        objects.append({'class_id': class_id, 'pose': pose, 'points': points,
                        'corners': pixels[:8], 'box': box_2d(pixels[:8])})
    return objects


def perfect_outputs(encoded, anchors, num_classes):
    """Outputs a perfect network would give: confident labels, exact box and corner targets."""
    return {'scores': 20.0 * F.one_hot(encoded['labels'], num_classes + 1).float()[None],
            'boxes': encoded['boxes'][None], 'corners': encoded['corners'][None],
            'anchors': anchors}


@pytest.mark.parametrize('mode', ['indirect', 'direct'])
def test_perfect_predictions_decode_to_the_boxes_corners_and_poses(mode):
    camera = CameraModel.from_intrinsics(260.0, 260.0, 111.5, 111.5, 224, 224)
    objects = scene(camera)
    iou = box_iou(torch.tensor(objects[0]['box'])[None], torch.tensor(objects[1]['box'])[None])
    assert iou > 0.45  # one NMS over both classes would drop one of them
    config = CornersConfig(num_classes=2, input_size=(224, 224), corner_mode=mode,
                           use_centre_as_ninth=True)
    anchors = make_anchors(config, 224, 224)
    gt = clean_targets(np.array([o['box'] for o in objects]),
                       np.array([o['corners'] for o in objects]),
                       [o['class_id'] for o in objects], config.num_classes)
    encoded = encode_targets(anchors, *gt, config)
    assert set(encoded['matched'].unique().tolist()) == {-1, 0, 1, 2}

    [instances] = decode_for_batch(perfect_outputs(encoded, anchors, 2), config)
    assert len(instances) == len(objects)
    for obj in objects:
        found = min((i for i in instances if i.class_id == obj['class_id']),
                    key=lambda i: np.abs(i.box - obj['box']).max())
        assert np.abs(found.box - obj['box']).max() < 0.5
        assert np.abs(found.keypoints[:8] - obj['corners']).max() < 0.5
        assert np.allclose(found.keypoints[8], (obj['box'][:2] + obj['box'][2:]) / 2, atol=0.5)
        assert found.score > 0.99 and np.all(found.confidence == found.score)
        result = solve_pnp(obj['points'][:8], found.keypoints[:8], camera)
        assert result.success, result.message
        assert np.linalg.norm(result.t - obj['pose'].t) < 0.01
        assert rotation_angle_deg(result.R, obj['pose'].R) < 2.0


def test_ninth_keypoint_is_missing_unless_asked_for():
    config = tiny_config(input_size=(128, 128))
    anchors = make_anchors(config, 128, 128)
    gt = clean_targets(*targets_of([(1, (30.0, 40.0, 90.0, 100.0))]).values(), 2)
    encoded = encode_targets(anchors, *gt, config)
    [[instance]] = decode_for_batch(perfect_outputs(encoded, anchors, 2), config)
    assert instance.class_id == 1 and instance.keypoints.shape == (9, 2)
    assert np.isnan(instance.keypoints[8]).all() and instance.confidence[8] == 0.0
    assert np.all(instance.confidence[:8] == instance.score)


def test_direct_corners_are_relative_to_the_anchor_and_indirect_to_the_box():
    kwargs = {'input_size': (128, 128)}
    targets = targets_of([(0, (28.0, 28.0, 67.0, 67.0))])  # centred on P6 anchors
    anchors = make_anchors(tiny_config(**kwargs), 128, 128)
    gt = clean_targets(targets['boxes'], targets['corners'], targets['labels'], 2)
    indirect = encode_targets(anchors, *gt, tiny_config(corner_mode='indirect', **kwargs))
    direct = encode_targets(anchors, *gt, tiny_config(corner_mode='direct', **kwargs))
    pos = indirect['labels'] > 0
    assert pos.sum() > 1 and torch.equal(pos, direct['labels'] > 0)
    assert torch.equal(indirect['boxes'], direct['boxes'])
    # indirect: the same target for every anchor of the object; direct: one per anchor
    assert torch.allclose(indirect['corners'][pos], encode_corners(gt[0], gt[1])[0].expand(
        int(pos.sum()), 16))
    assert torch.allclose(direct['corners'][pos], encode_corners(anchors[pos], gt[1][0]))
    assert direct['corners'][pos].std(0).mean() > 0.05


def test_targets_with_missing_corners_or_box_are_cleaned():
    corners = box_with_corners(10.0, 10.0, 50.0, 40.0)[None].repeat(3, 1, 1)
    corners[1, 2] = math.nan
    boxes = torch.tensor([[10.0, 10.0, 50.0, 40.0], [math.nan] * 4, [5.0, 5.0, 5.5, 30.0]])
    boxes_out, corners_out, labels_out = clean_targets(boxes, corners, [0, 1, 0], 2)
    assert labels_out.tolist() == [0, 1]  # the 0.5 px wide box is dropped
    assert torch.allclose(boxes_out[1], torch.cat([corners[1, [0, 1, 3, 4, 5, 6, 7]].amin(0),
                                                   corners[1, [0, 1, 3, 4, 5, 6, 7]].amax(0)]))
    config = tiny_config(input_size=(64, 64))
    encoded = encode_targets(make_anchors(config, 64, 64), boxes_out, corners_out, labels_out,
                             config)
    pos = encoded['labels'] == 2
    assert torch.isfinite(encoded['corners']).all()
    assert torch.all(encoded['corner_weights'][pos][:, 4:6] == 0)
    assert torch.all(encoded['corner_weights'][pos].sum(1) == 14)
    with pytest.raises(Pose6dError, match='class ids'):
        clean_targets(boxes, corners, [0, 2, 0], 2)


# --- loss ----------------------------------------------------------------------------------

def test_image_without_objects_gives_exactly_zero_regression_loss():
    model = tiny().train()
    outputs = model(torch.randn(2, 3, 64, 64))
    empty = {'boxes': torch.zeros(0, 4), 'corners': torch.zeros(0, 8, 2),
             'labels': torch.zeros(0, dtype=torch.long)}
    parts = corners_loss(outputs, [empty, empty], model.config)
    assert parts['box'].item() == 0.0 and parts['corners'].item() == 0.0
    assert parts['num_pos'].item() == 0
    assert torch.isfinite(parts['cls']) and parts['cls'] > 0  # the hardest negatives count
    parts['total'].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    config = tiny_config(input_size=(128, 128))
    anchors = make_anchors(config, 128, 128)
    num = anchors.shape[0]
    # Uniform logits: every anchor's cross-entropy is log(C + 1), so cls = (P + 3P) log 3 / P.
    outputs = {'scores': torch.zeros(2, num, 3), 'boxes': torch.zeros(2, num, 4),
               'corners': torch.zeros(2, num, 16), 'anchors': anchors}
    with_objects = targets_of([(0, (10.0, 10.0, 60.0, 50.0)), (1, (70.0, 60.0, 120.0, 120.0))])
    parts = corners_loss(outputs, [with_objects, with_objects], config)
    assert parts['num_pos'] > 4
    assert parts['cls'].item() == pytest.approx(4 * math.log(3), rel=1e-5)
    empty = targets_of([])
    parts = corners_loss(outputs, [empty, empty], config)   # 3 negatives each, normaliser 1
    assert parts['cls'].item() == pytest.approx(6 * math.log(3), rel=1e-5)


@pytest.mark.parametrize('reference', ['gt', 'predicted'])
def test_perfect_predictions_have_zero_regression_loss(reference):
    config = tiny_config(input_size=(128, 128))
    anchors = make_anchors(config, 128, 128)
    targets = targets_of([(0, (10.0, 10.0, 60.0, 50.0)), (1, (70.0, 60.0, 120.0, 120.0))])
    encoded = encode_targets(anchors, *clean_targets(*targets.values(), 2), config)
    parts = corners_loss(perfect_outputs(encoded, anchors, 2), [targets], config,
                         corner_target_box=reference)
    assert parts['box'].item() < 1e-8 and parts['corners'].item() < 1e-8
    assert parts['cls'].item() < 1e-6


def test_stages_and_loss_weights():
    model = tiny()
    outputs = model(torch.randn(2, 3, 64, 64))
    targets = [targets_of([(0, (8.0, 8.0, 40.0, 36.0))]),
               targets_of([(1, (20.0, 16.0, 60.0, 60.0))])]
    full = corners_loss(outputs, targets, model.config, stage=2)
    detection = corners_loss(outputs, targets, model.config, stage=1)
    assert full['corners'] > 0
    assert torch.allclose(detection['total'], full['cls'] + full['box'])
    detection['total'].backward()  # the corner head is in the graph (DDP) but learns nothing
    assert not model.head.corners.weight.grad.any() and model.head.box.weight.grad.any()
    assert torch.allclose(full['total'], full['cls'] + full['box'] + 10 * full['corners'])
    weighted = corners_loss(outputs, targets, model.config, alpha=2.0, beta=1.0)
    assert torch.allclose(weighted['total'], full['cls'] + 2 * full['box'] + full['corners'])
    total, logged = model.loss(outputs, targets, stage=2)  # the training loop's entry point
    assert torch.allclose(total, full['total']) and not logged['cls'].requires_grad
    collated = {k: torch.stack([t[k] for t in targets]) for k in targets[0]}  # data.collate
    assert torch.allclose(loss_for_batch(outputs, collated, model.config_dict())[0], total)
    with pytest.raises(Pose6dError, match='stage'):
        corners_loss(outputs, targets, model.config, stage=3)
    with pytest.raises(Pose6dError, match='unknown corners option'):
        corners_loss(outputs, targets, model.config, gamma=2.0)


def test_every_parameter_gets_a_finite_gradient():
    model = tiny(head_convs=1, input_size=(128, 128)).train()
    outputs = model(torch.randn(2, 3, 128, 128))
    # boxes matched on P3, P7 / P4, P5, P6: every level has positives, so every conv is used
    targets = [targets_of([(0, (8.0, 8.0, 20.0, 22.0)), (1, (30.0, 20.0, 110.0, 120.0))]),
               targets_of([(1, (28.0, 28.0, 43.0, 43.0)), (0, (60.0, 64.0, 90.0, 84.0)),
                           (1, (28.0, 28.0, 67.0, 67.0))])]
    model.loss(outputs, targets)[0].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f'no gradient for {missing}'
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f'non-finite gradient for {bad}'
    zero = [n for n, p in model.named_parameters() if not p.grad.any()]
    assert not zero, f'all-zero gradient for {zero}'


@pytest.mark.parametrize('size', [(128, 128), (96, 160)])
def test_no_nan_forward_backward_and_decode(size):
    model = tiny(input_size=(size[1], size[0])).train()
    outputs = model(torch.randn(2, 3, *size))
    num = outputs['anchors'].shape[0]
    assert num == sum(h * w for h, w in model.feature_sizes(*size)) * 4
    assert outputs['scores'].shape == (2, num, 3)
    assert outputs['boxes'].shape == (2, num, 4) and outputs['corners'].shape == (2, num, 16)
    assert all(torch.isfinite(v).all() for v in outputs.values())
    targets = [targets_of([(0, (10.0, 12.0, 50.0, 60.0))]), targets_of([])]
    total, _ = model.loss(outputs, targets)
    total.backward()
    assert torch.isfinite(total)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        detections = model.decode(model(torch.randn(2, 3, *size)), max_detections=5)
    assert len(detections) == 2 and all(len(d) <= 5 for d in detections)
    for instance in detections[0]:
        assert np.isfinite(instance.keypoints[:8]).all() and 0.01 < instance.score <= 1.0


# --- architecture and ablation switches ----------------------------------------------------

@pytest.mark.parametrize('resnet_h, strides', [(True, (4, 8, 16, 32, 64)),
                                               (False, (8, 16, 32, 64, 128))])
def test_resnet_h_halves_every_stride(resnet_h, strides):
    model = tiny(resnet_h=resnet_h).eval()
    assert model.strides == strides == level_strides(resnet_h)
    assert model.backbone.strides == strides[:3]
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        c3, c4, c5 = model.backbone(x)
        features = model.features(x)
    assert [c.shape[-1] for c in (c3, c4, c5)] == [128 // s for s in strides[:3]]
    assert [tuple(f.shape[-2:]) for f in features] == model.feature_sizes(128, 128) == [
        (128 // s, 128 // s) if s <= 128 else (1, 1) for s in strides]
    assert all(f.shape[1] == 16 for f in features)


def test_paper_anchor_layout():
    config = CornersConfig()  # ResNet-h, 448 x 448: 112^2 + 56^2 + 28^2 + 14^2 + 7^2 locations
    anchors = make_anchors(config, 448, 448)
    assert anchors.shape == (66836, 4)  # the number the paper reports
    shapes = anchor_shapes(config)
    assert [round(float(s[1, 0]), 2) for s in shapes] == list(PAPER_ANCHOR_SIZES)  # 1:1 anchors
    assert torch.allclose(shapes[0][0], torch.tensor([25 / 2 ** 0.5, 25 * 2 ** 0.5],
                                                     dtype=torch.float64))
    assert float(shapes[4][3, 0]) == pytest.approx(294.64, abs=0.01)  # P7's extra square
    # first anchor: P3 cell (0, 0), centre at half a stride
    assert torch.allclose((anchors[0, :2] + anchors[0, 2:]) / 2, torch.tensor([1.5, 1.5]))
    # a 300 x 224 (width x height) model: anchors scale with min(width, height) / 448
    for half, full in zip(anchor_shapes(CornersConfig(input_size=(300, 224))), shapes):
        assert torch.allclose(half, full / 2)
    assert len(make_anchors(CornersConfig(resnet_h=False), 448, 448)) == 4 * (
        56 ** 2 + 28 ** 2 + 14 ** 2 + 7 ** 2 + 4 ** 2)


# torchvision's resnet18/34/50 without fc (513,000 and 2,049,000 parameters)
TORCHVISION_BACKBONE_PARAMETERS = {18: 11_689_512 - 513_000, 34: 21_797_672 - 513_000,
                                   50: 25_557_032 - 2_049_000}


@pytest.mark.parametrize('depth', [18, 34, 50])
def test_depths_match_torchvision_layout(depth):
    backbone = ResNet(depth, max_pool=False)
    assert sum(p.numel() for p in backbone.parameters()) == TORCHVISION_BACKBONE_PARAMETERS[depth]
    keys = set(backbone.state_dict())
    assert {'conv1.weight', 'bn1.running_var', 'layer2.0.downsample.0.weight',
            'layer4.1.bn2.num_batches_tracked'} <= keys
    assert ('layer1.0.downsample.1.weight' in keys) == (depth == 50)
    assert ('layer4.2.conv3.weight' in keys) == (depth == 50)
    assert backbone.out_channels == ((128, 256, 512) if depth < 50 else (512, 1024, 2048))


def test_config_round_trip_and_registry():
    model = tiny(num_classes=3, corner_mode='direct', head_convs=1).eval()
    args = json.loads(json.dumps(model.config_dict()))  # plain types only
    rebuilt = build_network('corners', args).eval()
    assert rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        a, b = model(x), rebuilt(x)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(Pose6dError, match='unknown key.s. '):
        CornersNet.from_config_dict({**args, 'colour': 'red'})
    with pytest.raises(Pose6dError, match='corner_mode'):
        CornersConfig(corner_mode='sideways')
    with pytest.raises(Pose6dError, match='depth'):
        CornersConfig(depth=101)


def test_frozen_stages_keep_weights_and_statistics():
    model = tiny(frozen_stages=2).train()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(('backbone.conv1', 'backbone.bn1', 'backbone.layer1'))
                          for n in frozen)
    assert not model.backbone.bn1.training and not model.backbone.layer1[0].bn1.training
    assert model.backbone.layer2[0].bn1.training


# --- NMS -----------------------------------------------------------------------------------

def reference_nms(boxes, scores, threshold):
    """The textbook loop: take the best remaining box, drop what overlaps it too much."""
    boxes, scores = boxes.double().numpy(), scores.double().numpy()
    keep = []
    for i in np.argsort(-scores, kind='stable'):
        ok = True
        for j in keep:
            w = min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0])
            h = min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1])
            inter = max(w, 0.0) * max(h, 0.0)
            area = np.prod(boxes[[i, j], 2:] - boxes[[i, j], :2], axis=1)
            ok = ok and inter / (area.sum() - inter) <= threshold
        if ok:
            keep.append(int(i))
    return keep


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('threshold', [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, threshold):
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(120, 2, generator=g) * 100
    boxes = torch.cat([corner, corner + 5 + torch.rand(120, 2, generator=g) * 40], 1)
    scores = torch.rand(120, generator=g)
    for device in DEVICES:
        keep = nms(boxes.to(device), scores.to(device), threshold).cpu()
        assert keep.tolist() == reference_nms(boxes, scores, threshold)
    classes = torch.randint(0, 3, (120,), generator=g)
    expected = sorted((i for c in range(3) for i in torch.nonzero(classes == c).flatten()[
        reference_nms(boxes[classes == c], scores[classes == c], threshold)].tolist()),
        key=lambda i: -float(scores[i]))
    assert batched_nms(boxes, scores, classes, threshold).tolist() == expected


def test_nms_is_class_wise():
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0], [12.0, 11.0, 52.0, 50.0],
                          [11.0, 10.0, 50.0, 52.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.45).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.45).tolist() == [0]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)


# --- learning smoke test -------------------------------------------------------------------

def synthetic_batch():
    """Two 64x64 images of flat coloured rectangles on grey, with their targets."""
    layouts = [[(0, (12.0, 10.0, 44.0, 40.0), (1.0, -1.0, -1.0))],
               [(1, (28.0, 20.0, 58.0, 56.0), (-1.0, 1.0, -1.0)),
                (0, (4.0, 40.0, 22.0, 60.0), (1.0, -1.0, -1.0))]]
    images = torch.zeros(2, 3, 64, 64)
    targets = []
    for b, layout in enumerate(layouts):
        for _, (x0, y0, x1, y1), colour in layout:
            images[b, :, int(y0):int(y1) + 1, int(x0):int(x1) + 1] = torch.tensor(colour)[:, None,
                                                                                          None]
        targets.append(targets_of([(c, box) for c, box, _ in layout]))
    return images, targets


def test_a_few_steps_on_two_images_reduce_the_loss():
    model = tiny().train()
    images, targets = synthetic_batch()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        total, _ = model.loss(model(images), targets)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        losses.append(total.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] / 10, losses  # ~30-50x with this seed and others


def test_works_through_the_training_method_interface():
    from pose6d_ros.core.data.training import collate, Instance
    from pose6d_ros.core.nets.methods import get_method

    torch.manual_seed(0)
    method = get_method('corners', 2, network={'depth': 18, 'backbone_width': 8,
                                               'fpn_channels': 16, 'input_size': [64, 64]})
    model = method.build_network().train()
    keypoints = np.concatenate([box_with_corners(8.0, 8.0, 40.0, 36.0).numpy(),
                                [[24.0, 22.0]]])
    samples = [(torch.randn(3, 64, 64), method.targets(
        [Instance(1, keypoints, np.array([8.0, 8.0, 40.0, 36.0]), 1.0)], (64, 64))),
        (torch.randn(3, 64, 64), method.targets([], (64, 64)))]
    images, targets = collate(samples)
    total, parts = method.loss(model(images), targets, stage=1)
    assert torch.isfinite(total) and parts['num_pos'] > 0
    model.eval()
    with torch.no_grad():
        assert len(method.decode(model(images))) == 2


def test_an_estimator_named_by_method_decodes_with_its_networks_configuration():
    """Estimator(network, 'corners', ...) decodes with the network's anchors and codec.

    Not the defaults, which would decode boxes against the wrong anchor variances.
    """
    from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet
    from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig

    objects = ObjectSet([ObjectModel('cube', 1, box_keypoints([-0.02] * 3, [0.02] * 3), 0.07)])
    network = tiny(num_classes=1, box_variances=(0.2, 0.3))
    estimator = Estimator(network, 'corners', objects, (64, 64),
                          {'mean': [0.0] * 3, 'std': [1.0] * 3}, device='cpu',
                          config=EstimatorConfig(optimize=False))
    assert CornersConfig.from_dict(estimator.method.network_config) == network.config
