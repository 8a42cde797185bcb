"""The tracker: stable identities, filtered poses, and poses between network runs.

`Tracker.step(image_rgb, camera, stamp, detect)` takes one camera frame and returns the poses
to publish for it, each an `ObjectPose` with its `track_id`, its `source` and a quality figure
as its `score`. `detect` is a callable that runs the network on this frame and returns its
instances (already filtered by score); the tracker calls it only when it needs to:

- every `network_every` frames, the first frame, and at once when a track asks for it (a
  new track awaiting confirmation, a jump awaiting confirmation, a followed pose whose
  quality fell below `min_quality` or whose features were lost);
- between those frames each track is followed in the image (follower.py: KLT + PnP).

Per frame: every track's filter is predicted to the frame's stamp; the network's instances are
paired with the tracks (association.py; symmetry-aware); a paired instance is turned into its
symmetric equivalent closest to the track and fused (se3_filter.py), unless it jumps farther
than `gate_distance` / `gate_angle_deg` from the prediction: such a jump is held back, and
only `jump_confirmations` consistent jumps in a row move the track (the filter restarts
there; a jump is never averaged in). Unpaired instances start tentative tracks.

Tracks: a track is published once the network has seen it in `confirm_hits` of its last
`confirm_window` runs (a one-frame false detection never is), and dropped when the network
has not seen it for `timeout_s` seconds of stamps; it is published only while the network
has seen it within `max_coast_s` (the follower alone does not keep a track in the outputs:
it could be following a false detection's patch of background). While nothing measures it
(hidden, or lost by the follower) it coasts on its prediction.
Ids count up from 0 over the tracker's life and are never reused. A stamp earlier than the
previous frame's (a bag played again) starts over with no tracks.

`source`: 'network' (the network's instance fused this frame), 'tracked' (the followed
features' pose fused this frame) or 'predicted' (no measurement this frame: the filter's
prediction). `score`: the network's score for a network pose; times the follower's quality
(share of features kept, PnP fit) for a tracked one; decaying linearly to 0 over
`max_coast_s` for a predicted one.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field, fields, replace
import math
import time

import numpy as np

from pose6d_ros.core.geometry.poses import box_2d
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.core.tracking.association import associate
from pose6d_ros.core.tracking.follower import (
    follow,
    FollowerConfig,
    seed_features,
    to_gray,
)
from pose6d_ros.core.tracking.raycast import MeshRays
from pose6d_ros.core.tracking.se3_filter import FilterConfig, MeasurementNoise, PoseFilter
from pose6d_ros.core.tracking.symmetry import closest_equivalent, rotation_angle

SOURCES = ('network', 'tracked', 'predicted')


@dataclass(frozen=True)
class TrackerConfig:
    """How tracks are made, confirmed, filtered, followed and dropped."""

    network_every: int = 5          # frames between network runs; 1: every frame, no KLT
    confirm_hits: int = 2           # published once the network saw it in this many ...
    confirm_window: int = 3         # ... of its last this many runs (1 and 1: at once)
    timeout_s: float = 1.0          # dropped when the network has not seen it for this long
    max_coast_s: float = 0.5        # published until the network has missed it this long
    max_distance: float = 0.1       # m; an instance farther from every track starts a new one
    gate_distance: float = 0.03     # m; a measurement this far from the prediction is a jump
    gate_angle_deg: float = 30.0    # degrees; the same for rotation (up to symmetries)
    jump_confirmations: int = 2     # consistent jumps in a row that move a track
    min_quality: float = 0.5        # a followed pose below this asks for the network
    filter: FilterConfig = field(default_factory=FilterConfig)  # noqa: A003
    network_noise: MeasurementNoise = MeasurementNoise(0.002, 0.008, 3.0)
    tracked_noise: MeasurementNoise = MeasurementNoise(0.001, 0.004, 1.5)
    follower: FollowerConfig = field(default_factory=FollowerConfig)

    def __post_init__(self):
        problems = []
        if not (isinstance(self.network_every, int) and self.network_every >= 1):
            problems.append(f'network_every must be an integer >= 1; got {self.network_every!r}')
        if not (isinstance(self.confirm_window, int) and self.confirm_window >= 1):
            problems.append(f'confirm_window must be an integer >= 1; got '
                            f'{self.confirm_window!r}')
        elif not (isinstance(self.confirm_hits, int)
                  and 1 <= self.confirm_hits <= self.confirm_window):
            problems.append(f'confirm_hits must be an integer from 1 to confirm_window '
                            f'({self.confirm_window}); got {self.confirm_hits!r}')
        for name in ('timeout_s', 'max_distance', 'gate_distance', 'gate_angle_deg'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                problems.append(f'{name} must be a number > 0; got {value!r}')
        if not (isinstance(self.max_coast_s, (int, float)) and self.max_coast_s >= 0):
            problems.append(f'max_coast_s must be a number >= 0; got {self.max_coast_s!r}')
        if not (isinstance(self.jump_confirmations, int) and self.jump_confirmations >= 1):
            problems.append(f'jump_confirmations must be an integer >= 1; got '
                            f'{self.jump_confirmations!r}')
        if not (isinstance(self.min_quality, (int, float)) and 0.0 <= self.min_quality <= 1.0):
            problems.append(f'min_quality must be in [0, 1]; got {self.min_quality!r}')
        if problems:
            raise ValueError('; '.join(problems))

    def with_values(self, **values):
        """A copy with some fields changed (unknown names are a ValueError)."""
        unknown = sorted(set(values) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f'unknown tracker setting(s) {", ".join(unknown)}')
        return replace(self, **values)


class Track:
    """One object instance over time."""

    def __init__(self, track_id, obj, pose, score, stamp, config):
        self.id = track_id
        self.object = obj
        self.filter = PoseFilter(pose, stamp, config.network_noise, config.filter)
        self.hits = deque([True], maxlen=config.confirm_window)  # per network run: seen?
        self.confirmed = config.confirm_hits <= 1
        self.last_seen = stamp          # the network's last sighting (stamp, seconds)
        self.last_measured = stamp      # the last measurement of any source
        self.score = float(score)       # the network's score at its last sighting
        self.quality = float(score)
        self.source = 'network'
        self.reprojection_error = 0.0
        self.inliers = 0
        self.features = None            # follower.FeatureSet, from the last network pose
        self.pending = []               # held-back jumps (Poses), oldest first
        self.wants_network = not self.confirmed
        self.updated_by_network = True  # in the current frame

    @property
    def pose(self):
        return self.filter.pose


class Tracker:
    """Tracks of the objects of an `ObjectSet` over a stream of frames (see the module doc)."""

    def __init__(self, objects, config=None):
        self.objects = objects
        self.config = config or TrackerConfig()
        self.tracks = []
        self.next_id = 0
        self.frames = 0
        self.network_runs = 0
        self.network_reasons = Counter()  # why the network ran: schedule, confirmation, ...
        self.timings = {}                # seconds of the last step: network, tracker
        self._meshes = {}
        self._gray = None
        self._camera = None
        self._last_stamp = None
        self._frames_since_network = 0

    def configure(self, config):
        """Use new settings from the next frame on; the tracks are kept."""
        for track in self.tracks:
            track.hits = deque(track.hits, maxlen=config.confirm_window)
            if config.network_every <= 1:
                track.features = None
        self.config = config

    def reset(self):
        """Forget every track (ids keep counting up)."""
        self.tracks = []
        self._gray = None
        self._last_stamp = None
        self._frames_since_network = 0

    def step(self, image_rgb, camera, stamp, detect):
        """The poses to publish for this frame (confirmed tracks, by id).

        image_rgb: (H, W, 3) uint8; camera: its CameraModel; stamp: the image's time in
        seconds (its header stamp); detect: callable () -> list[ObjectPose], the network's
        instances in this frame. Whatever `detect` raises leaves the tracker as it was.
        """
        start = time.perf_counter()
        stamp = float(stamp)
        gray = to_gray(image_rgb)
        restart = self._last_stamp is not None and stamp < self._last_stamp  # time went back
        same_view = (not restart and self._gray is not None and self._gray.shape == gray.shape
                     and camera == self._camera)
        followed = {}
        if same_view and self.config.network_every > 1:
            for track in self.tracks:
                if track.features is not None:
                    followed[track.id] = follow(track.features, self._gray, gray, camera,
                                                track.filter.prediction(stamp),
                                                self.config.follower)
        reason = self._network_due(followed, same_view)
        run_network = bool(reason)
        network_s = 0.0
        instances = None
        if run_network:
            network_start = time.perf_counter()
            instances = list(detect())          # may raise: nothing has changed yet
            network_s = time.perf_counter() - network_start
            self.network_reasons[reason] += 1
        if restart:
            self.reset()

        for track in self.tracks:
            track.filter.predict(stamp)
            track.updated_by_network = False
        if run_network:
            self._use_network(instances, stamp)
        else:
            self._frames_since_network += 1
        for track in self.tracks:
            if not track.updated_by_network:
                self._use_follower(track, followed.get(track.id), stamp)
        self._seed(gray, camera)
        self._drop(stamp)
        self._gray, self._camera, self._last_stamp = gray, camera, stamp
        self.frames += 1
        outputs = [self._output(track, camera, stamp) for track in self.tracks
                   if track.confirmed and stamp - track.last_seen <= self.config.max_coast_s]
        self.timings = {'network': network_s,
                        'tracker': time.perf_counter() - start - network_s}
        return outputs

    # --- the steps ----------------------------------------------------------------------------

    def _network_due(self, followed, same_view):
        """Why the network runs on this frame ('' when it does not)."""
        if not same_view:
            return 'new view'         # the first frame, or another camera or image size
        if self.config.network_every <= 1 or (
                self._frames_since_network + 1 >= self.config.network_every):
            return 'schedule'
        for track in self.tracks:
            if not track.confirmed and track.wants_network:
                return 'confirmation'
            if track.pending:
                return 'jump'
            if track.wants_network:
                return 'lost'
            result = followed.get(track.id)
            if track.confirmed and result is not None:
                if not result.success:
                    return 'lost'
                if result.quality < self.config.min_quality:
                    return 'quality'
        return ''

    def _use_network(self, instances, stamp):
        self.network_runs += 1
        self._frames_since_network = 0
        tracks = self.tracks
        found = associate([t.object.class_id for t in tracks],
                          [t.filter.pose for t in tracks],
                          [int(i.class_id) for i in instances], [i.pose for i in instances],
                          lambda class_id: self.objects[class_id].symmetries,
                          self.config.max_distance)
        for i, j in found.matches:
            self._network_measurement(tracks[i], instances[j], stamp)
        for i in found.unmatched_tracks:
            tracks[i].hits.append(False)
        for j in found.unmatched_instances:
            instance = instances[j]
            obj = self.objects[int(instance.class_id)]
            track = Track(self.next_id, obj, instance.pose, instance.score, stamp, self.config)
            track.reprojection_error = float(instance.reprojection_error)
            track.inliers = int(instance.inliers)
            self.next_id += 1
            self.tracks.append(track)
        for track in self.tracks:
            if not track.confirmed:
                track.confirmed = sum(track.hits) >= self.config.confirm_hits
            track.wants_network = (not track.confirmed and self._can_confirm(track)) or bool(
                track.pending)

    def _network_measurement(self, track, instance, stamp):
        config = self.config
        measured = closest_equivalent(instance.pose, track.filter.pose, track.object.symmetries)
        track.hits.append(True)
        track.last_seen = stamp
        track.score = float(instance.score)
        if self._is_jump(measured, track.filter.pose, widen=self._uncertain_motion(track, stamp)):
            if track.pending and not self._is_jump(measured, track.pending[-1], slack=2.0):
                track.pending.append(measured)
            else:
                track.pending = [measured]
            if len(track.pending) < config.jump_confirmations:
                return                        # held back: the follower may still measure it
            track.filter.reset(measured, stamp, config.network_noise)
        else:
            track.filter.update(measured, config.network_noise)
        track.pending = []
        track.updated_by_network = True
        track.features = None                 # re-seeded at the new pose (_seed)
        track.source = 'network'
        track.quality = track.score
        track.last_measured = stamp
        track.reprojection_error = float(instance.reprojection_error)
        track.inliers = int(instance.inliers)

    def _use_follower(self, track, result, stamp):
        if result is None:
            track.source = 'predicted'
            return
        if result.success:
            measured = closest_equivalent(result.pose, track.filter.pose,
                                          track.object.symmetries)
            if not self._is_jump(measured, track.filter.pose,
                                 widen=self._uncertain_motion(track, stamp)):
                track.filter.update(measured, self.config.tracked_noise)
                track.features = result.features
                track.source = 'tracked'
                track.quality = track.score * result.quality
                track.last_measured = stamp
                track.reprojection_error = result.reprojection_error
                track.inliers = len(result.features)
                if result.quality < self.config.min_quality:
                    track.wants_network = True
                return
        track.features = None                 # lost, or jumped: the network re-seeds it
        track.source = 'predicted'
        track.wants_network = True

    def _seed(self, gray, camera):
        """Features for tracks the network just measured, nearest object first."""
        todo = [t for t in self.tracks if t.updated_by_network and self.config.network_every > 1]
        if not todo:
            return
        by_depth = sorted(self.tracks, key=lambda t: t.filter.p[2])
        taken = np.zeros(gray.shape, np.uint8) if len(self.tracks) > 1 else None
        for track in by_depth:
            mesh = self._mesh(track.object)
            if track in todo:
                track.features = seed_features(gray, camera, track.pose, mesh,
                                               self.config.follower, exclude=taken)
            if taken is not None:  # what this object covers is not a farther object's
                taken |= mesh.outline_mask(track.pose, camera)

    def _drop(self, stamp):
        kept = []
        for track in self.tracks:
            if track.confirmed:
                alive = stamp - track.last_seen <= self.config.timeout_s
            else:
                alive = self._can_confirm(track)
            if alive:
                kept.append(track)
        self.tracks = kept

    def _output(self, track, camera, stamp):
        obj = track.object
        pose = track.pose
        score = track.quality
        if track.source == 'predicted':
            age = stamp - track.last_measured
            score = track.score * max(0.0, 1.0 - age / max(self.config.max_coast_s, 1e-9))
        keypoints = camera.project(pose.transform(obj.keypoints))
        corners = keypoints[:8][np.isfinite(keypoints[:8]).all(axis=1)]
        box = box_2d(corners) if len(corners) else np.zeros(4)
        box = np.clip(box, -0.5, [camera.width - 0.5, camera.height - 0.5] * 2)
        return ObjectPose(obj.name, obj.class_id, obj.object_id, float(score), keypoints, box,
                          pose.R, pose.t, float(track.reprojection_error), int(track.inliers),
                          obj.box_size, obj.keypoints[8].copy(), track_id=track.id,
                          source=track.source, covariance=track.filter.covariance)

    # --- helpers ------------------------------------------------------------------------------

    def _is_jump(self, measured, reference, slack=1.0, widen=(0.0, 0.0)):
        """True when `measured` is farther from `reference` than the gate (+ `widen`).

        widen: (metres, degrees) added to the gate, see `_uncertain_motion`.
        """
        distance = float(np.linalg.norm(measured.t - reference.t))
        angle = math.degrees(rotation_angle(measured.R, reference.R))
        return (distance > slack * self.config.gate_distance + widen[0]
                or angle > slack * self.config.gate_angle_deg + widen[1])

    def _uncertain_motion(self, track, stamp):
        """(metres, degrees) the object may have moved unforeseen since its last measurement.

        Two standard deviations of the filter's velocities times the time since: a young
        track, whose speed is not known yet, follows a fast object instead of holding every
        step back as a jump, while a settled track keeps the gate as set.
        """
        if track.filter.config.model == 'none':
            return 0.0, 0.0
        elapsed = max(stamp - track.last_measured, 0.0)
        P = track.filter.P
        speed = math.sqrt(max(float(np.trace(P[3:6, 3:6])), 0.0))
        spin = math.sqrt(max(float(np.trace(P[9:12, 9:12])), 0.0))
        return 2.0 * speed * elapsed, math.degrees(2.0 * spin * elapsed)

    def _can_confirm(self, track):
        """True while a tentative track can still reach confirm_hits in its window."""
        config = self.config
        misses = len(track.hits) - sum(track.hits)
        return misses <= config.confirm_window - config.confirm_hits

    def _mesh(self, obj):
        if obj.class_id not in self._meshes:
            self._meshes[obj.class_id] = MeshRays.from_object(obj)
        return self._meshes[obj.class_id]
