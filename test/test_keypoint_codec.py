"""HRPose targets: encoding ground-truth keypoints and decoding the maps gives them back."""

import numpy as np
import pytest
import torch

from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.poses import box_keypoints, Pose
from pose6d_ros.core.nets.keypoint_codec import (
    CodecConfig,
    decode,
    encode,
    find_peaks,
    from_map,
    to_map,
)

CAMERA = CameraModel.from_intrinsics(300.0, 300.0, 127.5, 95.5, 256, 192)
MUG = box_keypoints([-0.04, -0.05, -0.03], [0.04, 0.05, 0.03])
BOX = box_keypoints([-0.03, -0.03, -0.06], [0.03, 0.03, 0.06])


def project(keypoints, rotvec, t):
    return CAMERA.project(Pose.from_rotvec(rotvec, t).transform(keypoints))


def decoded(instances, num_classes, config):
    belief, vectors = encode(instances, num_classes, 48, 64, config)
    return decode(torch.from_numpy(belief)[None], torch.from_numpy(vectors)[None], num_classes,
                  config)[0]


def test_map_coordinates_follow_the_pixel_centre_convention():
    # The image's outer edge is the map's outer edge; the centre of input pixels 0..3 (1.5)
    # is the centre of map pixel 0.
    points = np.array([[-0.5, -0.5], [1.5, 1.5], [10.25, 3.0]])
    assert np.allclose(to_map(points, 4), [[-0.5, -0.5], [0.0, 0.0], [2.1875, 0.375]])
    assert np.allclose(from_map(to_map(points, 4), 4), points)


def test_round_trip_two_instances_of_one_object_and_two_objects_grouped_correctly():
    config = CodecConfig()
    truth = [
        (0, project(MUG, [0.3, 0.2, 0.1], [-0.12, -0.02, 0.6])),
        (0, project(MUG, [-0.2, 0.5, -0.3], [0.12, 0.03, 0.7])),
        (1, project(BOX, [0.1, -0.4, 0.6], [0.0, 0.08, 0.5])),
        (1, project(BOX, [1.0, 0.2, -0.2], [0.02, -0.1, 0.8])),
    ]
    found = decoded(truth, 2, config)
    assert len(found) == len(truth)
    for class_id, keypoints in truth:
        mine = [f for f in found if f.class_id == class_id]
        match = min(mine, key=lambda f: np.abs(f.keypoints[8] - keypoints[8]).max())
        assert np.isfinite(match.keypoints).all(), 'every keypoint of the instance was found'
        # < 1 px at output stride: < stride input pixels.
        error = np.linalg.norm(match.keypoints - keypoints, axis=1).max() / config.stride
        assert error < 1.0
        assert match.confidence.min() > 0.9
        assert 0.9 < match.score <= 1.0


def test_sub_pixel_peaks_are_exact_for_a_gaussian():
    config = CodecConfig(sigma=1.5)
    truth = np.array([[17.3, 22.9]])
    belief, _ = encode([(0, np.repeat(truth, 9, axis=0))], 1, 16, 16, config)
    b, k, x, y, value = find_peaks(torch.from_numpy(belief)[None], 0.1)
    assert len(b) == 9
    found = from_map(np.stack([x.numpy(), y.numpy()], 1), config.stride)
    assert np.abs(found - truth).max() < 1e-3


def test_vector_fields_point_from_corners_to_the_centroid_within_their_radius():
    config = CodecConfig()
    keypoints = project(MUG, [0.3, 0.2, 0.1], [0.0, 0.0, 0.5])
    _, vectors = encode([(0, keypoints)], 1, 48, 64, config)
    corner, centroid = to_map(keypoints[0], 4), to_map(keypoints[8], 4)
    row, col = int(round(corner[1])), int(round(corner[0]))
    direction = (centroid - corner) / np.linalg.norm(centroid - corner)
    assert np.allclose(vectors[0:2, row, col], direction, atol=1e-6)
    nonzero_rows, nonzero_cols = np.nonzero(np.abs(vectors[0]) + np.abs(vectors[1]))
    distances = np.hypot(nonzero_cols - corner[0], nonzero_rows - corner[1])
    assert distances.max() <= config.vector_radius + 1e-6


def test_empty_maps_decode_to_nothing_and_missing_centroids_drop_instances():
    config = CodecConfig()
    empty = torch.zeros(2, 18, 12, 16), torch.zeros(2, 32, 12, 16)
    assert decode(*empty, 2, config) == [[], []]
    keypoints = project(MUG, [0.3, 0.2, 0.1], [0.0, 0.0, 0.5])
    keypoints[8] = np.nan  # no centroid: the corners have nothing to join
    assert decoded([(0, keypoints)], 1, config) == []


def test_instances_with_too_few_keypoints_are_dropped():
    keypoints = project(MUG, [0.3, 0.2, 0.1], [0.0, 0.0, 0.5])
    keypoints[:5] = np.nan  # 3 corners + centroid = 4 keypoints
    assert decoded([(0, keypoints)], 1, CodecConfig(min_keypoints=5)) == []
    assert len(decoded([(0, keypoints)], 1, CodecConfig(min_keypoints=4))) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_decoding_on_the_gpu_matches_the_cpu():
    config = CodecConfig()
    belief, vectors = encode([(0, project(MUG, [0.3, 0.2, 0.1], [0, 0, 0.5]))], 1, 48, 64, config)
    belief, vectors = torch.from_numpy(belief)[None], torch.from_numpy(vectors)[None]
    on_cpu = decode(belief, vectors, 1, config)[0][0]
    on_gpu = decode(belief.cuda(), vectors.cuda(), 1, config)[0][0]
    assert np.allclose(on_cpu.keypoints, on_gpu.keypoints, atol=1e-4)


def test_noise_maps_decode_to_a_bounded_number_of_the_strongest_instances():
    """An untrained network's maps hold thousands of peaks: decoding keeps the strongest."""
    config = CodecConfig(max_instances=3, min_keypoints=1)
    truth = [(0, project(MUG, [0.3, 0.2, 0.1], [-0.05, -0.02, 0.6]))]
    belief, vectors = encode(truth, 1, 48, 64, config)
    generator = np.random.default_rng(0)
    noise = generator.uniform(0.0, 0.5, belief.shape).astype(np.float32)
    belief = np.maximum(belief, noise)          # the true instance peaks at 1.0 above it
    found = decode(torch.from_numpy(belief)[None], torch.from_numpy(vectors)[None], 1, config)[0]
    peaks = find_peaks(torch.from_numpy(belief)[None], config.peak_threshold)[0]
    assert len(peaks) > 1000                    # what an unbounded decoder would group
    assert 1 <= len(found) <= 3
    best = max(found, key=lambda f: f.confidence[8])
    assert np.abs(best.keypoints[8] - truth[0][1][8]).max() < config.stride
