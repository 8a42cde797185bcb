"""The benchmark's loop-based reference decoders find what the package's tensor decoders find."""

import numpy as np
import pytest
import torch

from pose6d_ros.core.nets import keypoint_codec
from pose6d_ros.core.nets.methods import get_method
from pose6d_ros.tools.reference_decode import PythonDecoding


def assert_same_instances(ours, reference):
    assert [len(image) for image in ours] == [len(image) for image in reference]
    for mine, theirs in zip(ours, reference):
        mine = sorted(mine, key=lambda i: (i.class_id, -i.score))
        theirs = sorted(theirs, key=lambda i: (i.class_id, -i.score))
        for a, b in zip(mine, theirs):
            assert a.class_id == b.class_id
            assert np.array_equal(np.isnan(a.keypoints), np.isnan(b.keypoints))
            assert np.allclose(a.keypoints, b.keypoints, atol=1e-3, equal_nan=True)
            assert np.allclose(a.confidence, b.confidence, atol=1e-5)
            assert a.score == pytest.approx(b.score, abs=1e-5)
            if a.box is not None:
                assert np.allclose(a.box, b.box, atol=1e-3)


def box_keypoints_2d(cx, cy, half):
    corners = [(cx + half * (1 if k & 4 else -1) + 3 * (k & 1), cy + half * (1 if k & 2 else -1)
                + 2 * (k & 1)) for k in range(8)]
    return np.array(corners + [(cx, cy)], dtype=np.float64)


def test_keypoint_reference_decoder_matches_the_tensor_decoder():
    method = get_method('keypoints', 2)
    rng = np.random.default_rng(0)
    images = []
    for instances in ([(0, box_keypoints_2d(40, 40, 14)), (1, box_keypoints_2d(90, 60, 18)),
                       (0, box_keypoints_2d(110, 30, 10))],
                      [(1, box_keypoints_2d(60, 50, 20))]):
        belief, vectors = keypoint_codec.encode(instances, 2, 24, 32)
        belief = belief * rng.uniform(0.5, 1.0) + rng.uniform(0, 0.08, belief.shape)  # noise
        belief[:, 2, 3] = 0.6                              # a spurious peak in every channel
        images.append((belief, vectors))
    outputs = {'belief': torch.from_numpy(np.stack([b for b, _ in images]).astype(np.float32)),
               'vectors': torch.from_numpy(np.stack([v for _, v in images]).astype(np.float32))}
    ours = method.decode(outputs)
    assert [len(image) for image in ours] == [3, 1]
    assert_same_instances(ours, PythonDecoding(method).decode(outputs))


def test_corner_reference_decoder_matches_the_tensor_decoder():
    torch.manual_seed(0)
    network = {'depth': 18, 'backbone_width': 8, 'fpn_channels': 16, 'input_size': [64, 64]}
    method = get_method('corners', 2, network=network)
    network = method.build_network().eval()
    with torch.no_grad():
        outputs = network(torch.randn(2, 3, 64, 64))
    outputs['scores'] = 3.0 * torch.randn_like(outputs['scores'])  # many confident boxes
    ours = method.decode(outputs)
    assert min(len(image) for image in ours) > 5
    assert_same_instances(ours, PythonDecoding(method).decode(outputs))
