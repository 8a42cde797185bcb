"""The tracker without images: identities, confirmation, gating, symmetries, stamps.

The network's instances are made up here, frame by frame, and the tracker runs with the
network on every frame (`network_every=1`), so no image content matters: the images are tiny
and blank. Following in the image (KLT + PnP) is tested on rendered frames in
test_tracking_render.py.
"""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet, Symmetries
from pose6d_ros.core.geometry.poses import box_keypoints, Pose
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.core.tracking import tracker as tracker_module
from pose6d_ros.core.tracking.association import associate
from pose6d_ros.core.tracking.follower import FeatureSet, FollowResult
from pose6d_ros.core.tracking.se3_filter import (
    exp_so3,
    FilterConfig,
    log_so3,
    MeasurementNoise,
    PoseFilter,
)
from pose6d_ros.core.tracking.symmetry import closest_equivalent, rotation_angle, symmetric_angle
from pose6d_ros.core.tracking.tracker import Tracker, TrackerConfig

CAMERA = CameraModel.from_intrinsics(40.0, 40.0, 15.5, 11.5, 32, 24)
IMAGE = np.zeros((24, 32, 3), np.uint8)
DT = 1.0 / 30.0
HALF_TURNS = tuple(np.block([[Rotation.from_rotvec(np.pi * axis).as_matrix(), np.zeros((3, 1))],
                             [np.zeros((1, 3)), np.ones((1, 1))]]) for axis in np.eye(3))


def objects():
    """Objects: mug (no symmetry), can (any turn about z), brick (half turns about x, y, z)."""
    half = np.array([0.03, 0.025, 0.04])
    mug = ObjectModel('mug', 1, box_keypoints(-half, half), 0.1)
    can = ObjectModel('can', 2, box_keypoints(-half, half), 0.1,
                      Symmetries(continuous=((np.array([0.0, 0.0, 1.0]), np.zeros(3)),)))
    brick = ObjectModel('brick', 3, box_keypoints(-half, half), 0.1,
                        Symmetries(discrete=HALF_TURNS))
    return ObjectSet([mug, can, brick])


OBJECTS = objects()


def instance(name, t, R=None, score=0.9):
    obj = OBJECTS.by_name(name)
    return ObjectPose(name, obj.class_id, obj.object_id, score, np.zeros((9, 2)), np.zeros(4),
                      np.eye(3) if R is None else R, np.asarray(t, dtype=float), 1.0, 9,
                      obj.box_size, np.zeros(3))


def run(frames, config=None, stamps=None):
    """Feed frames (lists of instances) to a tracker; its outputs, frame by frame."""
    tracker = Tracker(OBJECTS, config or TrackerConfig(network_every=1))
    stamps = [i * DT for i in range(len(frames))] if stamps is None else stamps
    return [tracker.step(IMAGE, CAMERA, stamp, lambda found=found: list(found))
            for stamp, found in zip(stamps, frames)]


def track_of(outputs, near, name=None):
    """The track id of the output closest to `near` (metres), among those of `name`."""
    candidates = [o for o in outputs if name is None or o.object_name == name]
    return min(candidates, key=lambda o: np.linalg.norm(o.t - near)).track_id


# --- symmetry ---------------------------------------------------------------------------------


def test_closest_equivalent_undoes_a_half_turn_and_a_turn_about_the_axis():
    rng = np.random.default_rng(0)
    brick, can = OBJECTS.by_name('brick'), OBJECTS.by_name('can')
    for _ in range(20):
        reference = Pose(Rotation.random(random_state=rng).as_matrix(), [0.0, 0.0, 0.5])
        turned = reference @ Pose.from_matrix(HALF_TURNS[int(rng.integers(3))])
        assert math.degrees(rotation_angle(turned.R, reference.R)) == pytest.approx(180.0)
        back = closest_equivalent(turned, reference, brick.symmetries)
        assert np.allclose(back.R, reference.R, atol=1e-9)
        spun = reference @ Pose(Rotation.from_euler('z', rng.uniform(-np.pi, np.pi)).as_matrix(),
                                np.zeros(3))
        assert symmetric_angle(spun, reference, can.symmetries) < 1e-6
        # Without symmetries nothing is undone.
        assert closest_equivalent(turned, reference, Symmetries()) is turned


def test_a_continuous_symmetry_keeps_the_rotation_off_its_axis():
    can = OBJECTS.by_name('can')
    reference = Pose(np.eye(3), [0.0, 0.0, 0.5])
    tilted = Pose(Rotation.from_euler('xz', [10.0, 70.0], degrees=True).as_matrix(), [0, 0, 0.5])
    # Turning about z cannot remove a 10 degree tilt of the axis.
    assert math.degrees(symmetric_angle(tilted, reference, can.symmetries)) == pytest.approx(
        10.0, abs=1e-6)


# --- the filter -------------------------------------------------------------------------------


def test_exp_and_log_are_inverse_near_zero_and_near_half_a_turn():
    rng = np.random.default_rng(1)
    for angle in (1e-9, 1e-3, 0.5, 3.0, np.pi - 1e-6):
        axis = rng.normal(size=3)
        rotvec = axis / np.linalg.norm(axis) * angle
        R = exp_so3(rotvec)
        assert np.allclose(R, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-9)
        back = log_so3(R)
        assert np.allclose(exp_so3(back), R, atol=1e-6)


def test_the_filter_smooths_the_noise_of_a_still_object():
    rng = np.random.default_rng(2)
    noise = MeasurementNoise(0.002, 0.008, 3.0)
    truth = Pose(Rotation.from_euler('xyz', [20, -30, 40], degrees=True).as_matrix(),
                 [0.05, -0.02, 0.6])
    measurements = []
    for _ in range(90):  # drawn from the noise the filter is told of (depth the worst)
        d = rng.multivariate_normal(np.zeros(6), noise.covariance(truth.t))
        measurements.append(Pose(exp_so3(d[3:]) @ truth.R, truth.t + d[:3]))
    kalman = PoseFilter(measurements[0], 0.0, noise,
                        FilterConfig(acceleration=0.3, angular_acceleration=1.0))
    estimates = []
    for i, measured in enumerate(measurements[1:], start=1):
        kalman.predict(i * DT)
        kalman.update(measured, noise)
        estimates.append(kalman.pose)

    def jitter(poses):  # RMS of the frame-to-frame change: metres, radians
        steps = list(zip(poses, poses[1:]))
        return (np.sqrt(np.mean([np.sum((a.t - b.t) ** 2) for a, b in steps])),
                np.sqrt(np.mean([rotation_angle(a.R, b.R) ** 2 for a, b in steps])))

    def error(poses):
        return (np.mean([np.linalg.norm(p.t - truth.t) for p in poses[-30:]]),
                np.mean([rotation_angle(p.R, truth.R) for p in poses[-30:]]))

    for filtered, raw in zip(jitter(estimates), jitter(measurements[1:])):
        assert filtered < raw / 2
    for filtered, raw in zip(error(estimates), error(measurements)):
        assert filtered < 0.8 * raw
    assert np.allclose(kalman.R @ kalman.R.T, np.eye(3), atol=1e-9)
    covariance = kalman.covariance
    assert covariance.shape == (6, 6) and np.allclose(covariance, covariance.T)
    assert np.all(np.linalg.eigvalsh(covariance) > 0)


def test_the_filter_runs_on_the_given_stamps_not_on_frame_counts():
    """Irregular stamps, as a bag with dropped frames gives: the velocity is in m/s."""
    rng = np.random.default_rng(3)
    gaps = rng.choice([DT, 2 * DT, 5 * DT, 0.01], size=80)
    stamps = 100.0 + np.concatenate([[0.0], np.cumsum(gaps)])  # bag time, not 0-based
    velocity = np.array([0.2, -0.1, 0.05])        # m/s
    spin = np.array([0.0, 0.0, 1.0])              # rad/s about the camera's z
    noise = MeasurementNoise(0.001, 0.002, 0.5)

    def truth(stamp):
        dt = stamp - stamps[0]
        return Pose(exp_so3(spin * dt), np.array([0.0, 0.0, 0.5]) + velocity * dt)

    kalman = PoseFilter(truth(stamps[0]), stamps[0], noise,
                        FilterConfig(velocity_decay_s=1e6))  # plain constant velocity
    for stamp in stamps[1:]:
        kalman.predict(stamp)
        measured = truth(stamp)
        kalman.update(Pose(measured.R, measured.t + rng.normal(0.0, 0.0005, 3)), noise)
    assert np.allclose(kalman.v, velocity, atol=0.04)
    assert np.allclose(kalman.w, spin, atol=0.1)
    later = stamps[-1] + 0.25
    predicted = kalman.prediction(later)
    assert np.linalg.norm(predicted.t - truth(later).t) < 0.015  # 6 cm of travel
    assert math.degrees(rotation_angle(predicted.R, truth(later).R)) < 1.5


def test_an_earlier_stamp_changes_nothing():
    noise = MeasurementNoise()
    kalman = PoseFilter(Pose(np.eye(3), [0.0, 0.0, 0.5]), 10.0, noise)
    kalman.v = np.array([1.0, 0.0, 0.0])
    kalman.predict(9.0)
    assert kalman.stamp == 10.0 and np.allclose(kalman.p, [0.0, 0.0, 0.5])


def test_the_tracker_turns_irregular_stamps_into_the_right_speed():
    stamps = [0.0, 0.02, 0.1, 0.11, 0.3, 0.34, 0.5, 0.52, 0.7]  # as played from a bag
    frames = [[instance('mug', [0.3 * s, 0.0, 0.5])] for s in stamps]
    config = TrackerConfig(network_every=1, confirm_hits=1, confirm_window=1)
    tracker = Tracker(OBJECTS, config)
    for stamp, found in zip(stamps, frames):
        tracker.step(IMAGE, CAMERA, stamp, lambda found=found: found)
    assert tracker.tracks[0].filter.v[0] == pytest.approx(0.3, abs=0.05)
    # A stamp earlier than the last one (the bag played again) starts over.
    tracker.step(IMAGE, CAMERA, 0.0, lambda: [instance('mug', [0.0, 0.0, 0.5])])
    assert [t.id for t in tracker.tracks] == [1]


# --- association and identities --------------------------------------------------------------


def test_associate_pairs_within_a_class_and_gates_far_instances():
    mug, brick = OBJECTS.by_name('mug'), OBJECTS.by_name('brick')
    predicted = [Pose(np.eye(3), [0.0, 0.0, 0.5]), Pose(np.eye(3), [0.1, 0.0, 0.5])]
    measured = [Pose(np.eye(3), [0.1, 0.0, 0.5]), Pose(np.eye(3), [0.01, 0.0, 0.5]),
                Pose(np.eye(3), [0.0, 0.0, 0.5]), Pose(np.eye(3), [0.5, 0.0, 0.5])]
    classes = [mug.class_id, brick.class_id, mug.class_id, mug.class_id]
    found = associate([mug.class_id, mug.class_id], predicted, classes, measured,
                      lambda c: OBJECTS[c].symmetries, max_distance=0.05)
    assert found.matches == [(0, 2), (1, 0)]          # a brick is never a mug's
    assert found.unmatched_instances == [1, 3]        # the brick, and a mug 40 cm away
    assert found.unmatched_tracks == []


def test_ids_survive_a_crossing_of_two_objects_of_the_same_kind():
    """Two mugs, one 5 cm behind the other, pass each other at 0.5 m/s, seen at 6.7 Hz.

    The step between two sightings (7.5 cm) is longer than the distance between the mugs,
    so from the frame after the crossing each mug is nearer the other's last position:
    pairing with the last positions swaps the ids, pairing with the predicted ones does not.
    """
    period, speed = 0.15, 0.5
    steps = 16
    xs = [speed * period * (i - (steps - 1) / 2) for i in range(steps)]  # crossing mid-step
    frames = [[instance('mug', [x, 0.0, 0.5]), instance('mug', [-x, 0.0, 0.55])] for x in xs]
    stamps = [i * period for i in range(steps)]

    outputs = run(frames, TrackerConfig(network_every=1, confirm_hits=1, confirm_window=1),
                  stamps)
    ids = [(track_of(out, [x, 0.0, 0.5]), track_of(out, [-x, 0.0, 0.55]))
           for x, out in zip(xs, outputs)]
    assert ids == [(0, 1)] * steps
    # The crossing is one that needs the prediction: paired with their last positions, the
    # mugs of the frame after it would swap.
    middle = steps // 2
    last = [Pose(np.eye(3), [xs[middle - 1], 0.0, 0.5]),
            Pose(np.eye(3), [-xs[middle - 1], 0.0, 0.55])]
    found = associate([0, 0], last, [0, 0], [o.pose for o in frames[middle]],
                      lambda c: OBJECTS[c].symmetries, max_distance=0.1)
    assert found.matches == [(0, 1), (1, 0)]


def test_ids_survive_a_short_occlusion_and_a_long_one_gives_a_new_track():
    def frames(hidden):
        out = []
        for i in range(45):
            t = [-0.1 + 0.15 * i * DT, 0.0, 0.5]   # 15 cm/s
            out.append([] if 10 <= i < 10 + hidden else [instance('mug', t)])
        return out

    config = TrackerConfig(network_every=1, timeout_s=0.5)
    short = run(frames(9), config)             # 0.3 s behind something
    ids = {o.track_id for out in short for o in out}
    assert ids == {0}
    assert all(o.source == 'predicted' for out in short[10:19] for o in out)
    assert [o.source for o in short[19]] == ['network']
    late = run(frames(25), config)             # 0.83 s: longer than the timeout
    assert {o.track_id for o in late[-1]} == {1}
    assert not any(late[10 + 16:10 + 25])      # dropped once the timeout passed
    # Published on its prediction for max_coast_s only; its id is kept until the timeout.
    coasting = run(frames(12), TrackerConfig(network_every=1, timeout_s=0.5, max_coast_s=0.2))
    assert [len(out) for out in coasting[10:22]] == [1] * 6 + [0] * 6
    assert {o.track_id for out in coasting for o in out} == {0}


def test_a_single_frame_false_detection_never_reaches_the_outputs():
    frames = [[instance('mug', [0.0, 0.0, 0.5])] for _ in range(12)]
    frames[5] = frames[5] + [instance('mug', [0.2, 0.1, 0.6], score=0.95)]  # a phantom
    confirmed = run(frames, TrackerConfig(network_every=1, confirm_hits=2, confirm_window=3))
    assert all(np.linalg.norm(o.t - [0.2, 0.1, 0.6]) > 0.05 for out in confirmed for o in out)
    assert all(len(out) == 1 for out in confirmed[1:])
    assert confirmed[0] == []                 # the real one waits for its second sighting too
    at_once = run(frames, TrackerConfig(network_every=1, confirm_hits=1, confirm_window=1))
    assert any(np.linalg.norm(o.t - [0.2, 0.1, 0.6]) < 0.01 for o in at_once[5])


def test_a_jump_is_held_back_until_confirmed_and_never_averaged():
    still = [0.0, 0.0, 0.5]
    moved = [0.08, 0.0, 0.5]          # 8 cm away: beyond the 3 cm gate, inside association
    frames = [[instance('mug', still)] for _ in range(10)]
    frames.append([instance('mug', moved)])                 # one wrong answer
    frames += [[instance('mug', still)] for _ in range(5)]
    frames += [[instance('mug', moved)] for _ in range(6)]  # the object was really moved
    outputs = run(frames, TrackerConfig(network_every=1, confirm_hits=1, confirm_window=1,
                                        jump_confirmations=2))
    positions = [out[0].t[0] for out in outputs]
    assert {out[0].track_id for out in outputs} == {0}
    assert abs(positions[10]) < 0.005                        # held back
    assert max(abs(p) for p in positions[:16]) < 0.005
    assert abs(positions[16]) < 0.005                        # first sighting: held back
    assert positions[17] == pytest.approx(0.08, abs=0.005)   # confirmed: there at once
    assert all(p < 0.005 or p > 0.075 for p in positions)    # never in between


def test_a_symmetric_object_does_not_flip():
    rng = np.random.default_rng(4)
    truth = Rotation.from_euler('xyz', [30, 10, 60], degrees=True).as_matrix()
    frames, raw = [], []
    for _ in range(40):
        R = truth @ HALF_TURNS[int(rng.integers(3))][:3, :3] if rng.random() < 0.5 else truth
        spin = Rotation.from_euler('z', rng.uniform(-np.pi, np.pi)).as_matrix()
        frames.append([instance('brick', [0.0, 0.0, 0.5], R),
                       instance('can', [0.15, 0.0, 0.6], truth @ spin)])
        raw.append((R, truth @ spin))
    flips = sum(rotation_angle(a[0], b[0]) > math.radians(90) for a, b in zip(raw, raw[1:]))
    assert flips > 10   # the network-only path would flip this often
    outputs = run(frames, TrackerConfig(network_every=1, confirm_hits=1, confirm_window=1))
    for name in ('brick', 'can'):
        rotations = [next(o for o in out if o.object_name == name).R for out in outputs]
        steps = [math.degrees(rotation_angle(a, b)) for a, b in zip(rotations, rotations[1:])]
        assert max(steps) < 1.0, name
        # ... and it is still right, up to the symmetry.
        final = next(o for o in outputs[-1] if o.object_name == name).pose
        assert math.degrees(symmetric_angle(final, Pose(truth, final.t),
                                            OBJECTS.by_name(name).symmetries)) < 1.0


def test_outputs_carry_source_quality_and_covariance():
    frames = [[instance('mug', [0.0, 0.0, 0.5], score=0.8)] for _ in range(3)] + [[]]
    outputs = run(frames, TrackerConfig(network_every=1, confirm_hits=1, confirm_window=1,
                                        timeout_s=0.2))
    seen, coasting = outputs[2][0], outputs[3][0]
    assert (seen.source, seen.score, seen.instance_name) == ('network', 0.8, 'mug_0')
    assert coasting.source == 'predicted' and 0.0 < coasting.score < 0.8
    assert seen.covariance.shape == (6, 6)
    assert np.all(np.diag(coasting.covariance) > np.diag(seen.covariance))
    assert np.allclose(seen.keypoints, CAMERA.project(seen.pose.transform(
        OBJECTS.by_name('mug').keypoints)))
    assert seen.to_dict()['track_id'] == 0 and seen.label() == 'mug_0 0.80 network'


def test_what_detect_raises_leaves_the_tracker_as_it_was():
    tracker = Tracker(OBJECTS, TrackerConfig(network_every=1, confirm_hits=1, confirm_window=1))
    tracker.step(IMAGE, CAMERA, 0.0, lambda: [instance('mug', [0.0, 0.0, 0.5])])
    before = (tracker.frames, tracker.tracks[0].filter.stamp, tracker.tracks[0].filter.p.copy())

    def broken():
        raise RuntimeError('no network today')

    for stamp in (1.0, -1.0):  # a later frame, and one that would start over
        with pytest.raises(RuntimeError):
            tracker.step(IMAGE, CAMERA, stamp, broken)
        after = (tracker.frames, tracker.tracks[0].filter.stamp, tracker.tracks[0].filter.p)
        assert before[:2] == after[:2] and np.array_equal(before[2], after[2])


def test_the_network_runs_every_n_frames_when_nothing_is_followed():
    calls = []

    def detect():
        calls.append(len(calls))
        return [instance('mug', [0.0, 0.0, 0.5])]

    tracker = Tracker(OBJECTS, TrackerConfig(network_every=4, confirm_hits=2, confirm_window=2))
    ran = []
    for i in range(13):
        before = len(calls)
        tracker.step(IMAGE, CAMERA, i * DT, detect)
        ran.append(len(calls) > before)
    # Frames 0 and 1: a new track asks for its confirmation at once; then every 4th frame.
    assert [i for i, r in enumerate(ran) if r] == [0, 1, 5, 9]
    assert tracker.network_runs == 4


@pytest.mark.parametrize('values, words', [
    ({'network_every': 0}, ['network_every']),
    ({'confirm_hits': 4, 'confirm_window': 3}, ['confirm_hits', 'confirm_window (3)']),
    ({'timeout_s': 0.0}, ['timeout_s']),
    ({'gate_angle_deg': math.nan}, ['gate_angle_deg']),
    ({'min_quality': 1.5}, ['min_quality']),
    ({'jump_confirmations': 0}, ['jump_confirmations']),
])
def test_bad_tracker_settings_are_named(values, words):
    with pytest.raises(ValueError) as error:
        TrackerConfig(**values)
    for word in words:
        assert word in str(error.value)
    with pytest.raises(ValueError, match='filter model'):
        FilterConfig(model='euler')


def test_following_alone_does_not_keep_a_track_in_the_outputs(monkeypatch):
    """A false detection confirmed twice, then followed on whatever lies there."""
    def seed(gray, camera, pose, mesh, config=None, exclude=None):
        return FeatureSet(np.zeros((20, 2), np.float32), np.zeros((20, 3)), pose, 20)

    def follow(features, before, now, camera, predicted, config=None):
        return FollowResult(True, features, predicted, 0.5, 0.9, 'ok')  # always "found"

    monkeypatch.setattr(tracker_module, 'seed_features', seed)
    monkeypatch.setattr(tracker_module, 'follow', follow)
    phantom = [instance('mug', [0.1, 0.0, 0.6])]
    tracker = Tracker(OBJECTS, TrackerConfig(network_every=5, max_coast_s=0.3, timeout_s=1.0))
    outputs, alive = [], []
    for i in range(40):
        outputs.append(tracker.step(IMAGE, CAMERA, i * DT,
                                    lambda i=i: phantom if i < 2 else []))
        alive.append(len(tracker.tracks))
    sources = [[o.source for o in out] for out in outputs]
    assert sources[1] == ['network'] and sources[2] == ['tracked']  # confirmed, then followed
    assert all(out[0].source == 'tracked' for out in outputs[2:11])
    last = max(i for i, out in enumerate(outputs) if out)
    assert last == 1 + 9                        # 0.3 s after the network last saw it
    assert not any(outputs[last + 1:])
    assert alive[last + 1:31] == [1] * (31 - last - 1)  # kept, not shown, until the timeout
    assert alive[32:] == [0] * 8
