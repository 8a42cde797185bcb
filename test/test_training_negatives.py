"""Images without any object in training: all-background targets, windows, short runs."""

import math

import numpy as np
import pytest
import torch
import yaml

from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.data.training import collate, PoseSamples
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.inference.bundle import IMAGENET_NORMALISATION, load_bundle
from pose6d_ros.core.nets import corners_codec
from pose6d_ros.core.nets.methods import get_method
from pose6d_ros.core.training.train import load_config
from pose6d_ros.tools import cli

INPUT = (96, 72)
CORNERS_NETWORK = {'depth': 18, 'backbone_width': 16, 'fpn_channels': 32,
                   'input_size': list(INPUT)}


def _negative_indices(dataset):
    indices = [i for i in range(len(dataset)) if not dataset[i].annotations]
    assert indices and len(indices) < len(dataset)   # the set has both kinds
    return indices


def test_a_negative_image_gives_all_background_keypoint_targets(tiny_negatives_dataset):
    dataset = BopDataset(tiny_negatives_dataset)
    method = get_method('keypoints', 1, {'backbone': 'hrnet_tiny'})
    samples = PoseSamples(dataset, dataset.object_set, INPUT, method.targets,
                          IMAGENET_NORMALISATION)
    for index in _negative_indices(dataset):
        image, targets = samples[index]
        assert image.shape == (3, 72, 96) and image.std() > 0
        assert targets['belief'].shape == (9, 18, 24) and targets['vectors'].shape == (16, 18, 24)
        assert not targets['belief'].any() and not targets['vectors'].any()
    network = method.build_network()
    outputs = network(torch.stack([samples[i][0] for i in _negative_indices(dataset)]))
    loss, parts = method.loss(outputs, collate([samples[i] for i in
                                                _negative_indices(dataset)])[1])
    # The loss is the outputs' own energy: it pulls every map towards "nothing here".
    assert torch.isclose(parts['belief'], outputs['belief'].pow(2).mean())
    assert torch.isclose(parts['vectors'], outputs['vectors'].pow(2).mean())
    loss.backward()


def test_a_negative_image_gives_background_anchors_and_zero_regression_loss(
        tiny_negatives_dataset):
    dataset = BopDataset(tiny_negatives_dataset)
    method = get_method('corners', 1, CORNERS_NETWORK)
    samples = PoseSamples(dataset, dataset.object_set, INPUT, method.targets,
                          IMAGENET_NORMALISATION)
    negatives = _negative_indices(dataset)
    images, targets = collate([samples[i] for i in negatives])
    assert all(boxes.shape == (0, 4) for boxes in targets['boxes'])
    network = method.build_network().train()
    outputs = network(images)
    config = corners_codec.network_config(method.network_config)
    for boxes, corners, labels in zip(targets['boxes'], targets['corners'], targets['labels']):
        encoded = corners_codec.encode_targets(
            outputs['anchors'], *corners_codec.clean_targets(boxes, corners, labels, 1), config)
        assert not encoded['labels'].any() and (encoded['matched'] == -1).all()
        assert not encoded['corner_weights'].any()
    parts = corners_codec.corners_loss(outputs, targets, config)
    assert parts['box'].item() == 0.0 and parts['corners'].item() == 0.0
    assert parts['num_pos'].item() == 0
    # Hard negative mining still picks negatives: 3 per image (one positive's worth each).
    ce = torch.nn.functional.cross_entropy(outputs['scores'].flatten(0, 1).float(),
                                           torch.zeros(outputs['scores'].shape[:2],
                                                       dtype=torch.long).flatten(),
                                           reduction='none').view(len(negatives), -1)
    hardest = ce.topk(3, dim=1).values.sum()
    assert parts['cls'].item() == pytest.approx(hardest.item(), rel=1e-5)
    parts['total'].backward()


def test_a_negative_image_gives_a_window_anywhere(tiny_negatives_dataset):
    dataset = BopDataset(tiny_negatives_dataset)
    method = get_method('keypoints', 1, {'backbone': 'hrnet_tiny'})
    samples = PoseSamples(dataset, dataset.object_set, INPUT, method.targets,
                          IMAGENET_NORMALISATION, crop=(48, 40))
    index = _negative_indices(dataset)[0]
    full = PoseSamples(dataset, dataset.object_set, INPUT, method.targets,
                       IMAGENET_NORMALISATION).load(index)[0]
    corners = set()
    for epoch in range(6):
        samples.set_epoch(epoch)
        window, instances = samples.load(index)
        assert window.shape == (40, 48, 3) and instances == []
        matches = [(x, y) for y in range(72 - 40 + 1) for x in range(96 - 48 + 1)
                   if np.array_equal(full[y:y + 40, x:x + 48], window)]
        assert matches
        corners.add(matches[0])
        _, targets = samples[index]
        assert targets['belief'].shape[-2:] == (10, 12) and not targets['belief'].any()
    assert len(corners) > 1     # a random window each epoch


def test_background_crops_place_a_share_of_windows_away_from_the_objects(tiny_dataset):
    dataset = BopDataset(tiny_dataset)
    method = get_method('keypoints', 1, {'backbone': 'hrnet_tiny'})

    def centres(share):
        samples = PoseSamples(dataset, dataset.object_set, INPUT, method.targets,
                              IMAGENET_NORMALISATION, crop=(48, 40), background_crops=share)
        found = []
        for index in range(len(dataset)):
            _, instances = samples.load(index)
            found.append(instances[0].keypoints[8] if instances else np.full(2, np.nan))
        return np.array(found)

    def inside(centre):
        return np.isfinite(centre).all(1) & (centre >= 0).all(1) & (centre < (48, 40)).all(1)

    assert inside(centres(0.0)).all()              # around an object: its centre in the window
    assert (~inside(centres(1.0))).sum() >= len(dataset) // 4   # anywhere: often not


@pytest.mark.parametrize('values, message', [
    ({'background_crops': 0.5}, 'set train_crop too'),
    ({'train_crop': '48x40', 'input_size': '96x72', 'background_crops': 1.5},
     r'background_crops must be a number in \[0, 1\]'),
])
def test_background_crops_are_checked(values, message):
    with pytest.raises(Pose6dError, match=message):
        load_config(None, values)


@pytest.mark.parametrize('method, extra', [
    ('keypoints', ['--backbone', 'hrnet_tiny', '--train-crop', '64x48']),
    ('corners', ['--backbone', 'resnet18', '--config', 'CORNERS']),
])
def test_a_dataset_with_negatives_trains(tiny_negatives_dataset, tmp_path, method, extra):
    """A few iterations on a set with negatives, for each method: finite losses, a bundle."""
    if 'CORNERS' in extra:
        path = tmp_path / 'corners.yaml'
        path.write_text(yaml.safe_dump({'network': {'backbone_width': 16,
                                                    'fpn_channels': 32}}))
        extra = [str(path) if word == 'CORNERS' else word for word in extra]
    out = tmp_path / 'run'
    status = cli.main(['train', '--method', method, '--data', str(tiny_negatives_dataset),
                       '--out', str(out), '--input-size', '96x72', '--epochs', '1',
                       '--batch-size', '8', '--max-iterations', '3', '--workers', '0',
                       '--device', 'cpu', '--val-fraction', '0.2', '--quiet', *extra])
    assert status == 0
    rows = (out / 'log.csv').read_text().splitlines()
    header = rows[0].split(',')
    losses = [float(row.split(',')[header.index('loss')]) for row in rows[1:]
              if row.split(',')[header.index('loss')]]
    assert losses and all(math.isfinite(v) for v in losses)
    assert load_bundle(out / 'bundle').method == method
