"""`pose6d bench tracking`: tracking off and on, side by side, on rendered sequences.

Two sequences are rendered at 30 frames per second with their ground truth:

- moving: a camera orbiting a table (textured, so the background moves with the camera) on
  which two demo boxes slide past each other, one crossing in front of the other, and a
  symmetric box (`checker_box`, a 3D checkerboard: it looks the same turned by 180 degrees
  about any of its axes) spins in place; a ball passes in front of them;
- static: the same objects and a still camera, with fresh sensor noise on every frame, for
  jitter.

The demo boxes are found by the real network (the bundle's estimator), run in the timed loop.
The bundled network does not know the symmetric box, so its instances come from a simulated
detector that behaves as a network does on a symmetric object: the true pose turned by a
random one of its symmetries, with noise, missed when mostly hidden, and a phantom (a false
detection) on some frames. It is labelled as simulated in the report.

Three paths run over each sequence: `network_only` (tracking off: every frame through the
network, instances named by rank as today), `tracking_network_every_frame` (identities and
the filter only) and `tracking` (the network every `network_every` frames, KLT + PnP between).
Reported per path: per-frame ADD(-S) pass rate (every frame where an object is at least 10%
visible; a miss fails), identity switches, false poses and false tracks, the output rate with
the network at its own rate (frames / the time spent on them), per-frame latency, the
tracker's own time per frame per object, and on the static sequence the jitter (RMS of the
frame-to-frame change of translation and rotation, rotation up to the object's symmetries)
and the orientation flips (a raw rotation change over 45 degrees between frames).

`--soak N`: the tracking path over N frames (the moving sequence played back and forth),
reporting resident memory growth after frame 1000 and latency p99 of the first minute
against the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import math
import os
from pathlib import Path
import tempfile
import time

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation
import trimesh

from pose6d_ros.core.cpus import machine_info
from pose6d_ros.core.data.augment import procedural_background
from pose6d_ros.core.data.render import Lighting, MeshData, Renderer, uv_sphere
from pose6d_ros.core.data.scenes import look_at_rotation
from pose6d_ros.core.geometry import metrics
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectModel, ObjectSet, Symmetries
from pose6d_ros.core.geometry.poses import box_2d, Pose
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.core.inference.bundle import default_model
from pose6d_ros.core.inference.estimator import Estimator
from pose6d_ros.core.tracking.symmetry import closest_equivalent, rotation_angle
from pose6d_ros.core.tracking.tracker import Tracker, TrackerConfig

FPS = 30.0
PERIOD_FRAMES = 90  # the moving sequence's motions repeat every 3 s
SYMMETRIC = 'checker_box'
SYMMETRIC_EXTENTS = (0.08, 0.08, 0.12)  # metres
CHECKER_CELL = 0.02                     # metres; every half extent is a multiple of it
MIN_SCORE = 0.5                         # the node's default min_score
PRESENT = 0.1        # visible fraction from which an object must be found in a frame
MATCH_GATE = 0.5     # an output farther than this many diameters from the truth is false
FLIP_DEG = 45.0      # a raw rotation change larger than this between frames is a flip


# --- the objects -----------------------------------------------------------------------------


def klein_symmetries():
    """The rotations by 180 degrees about x, y and z, as BOP 4x4 transforms."""
    out = []
    for axis in np.eye(3):
        S = np.eye(4)
        S[:3, :3] = Rotation.from_rotvec(np.pi * axis).as_matrix()
        out.append(S)
    return tuple(out)


def checker_box_mesh(extents=SYMMETRIC_EXTENTS, cell=CHECKER_CELL):
    """A box painted as a 3D checkerboard, one tint per pair of opposite faces.

    The colour of a point is the parity of floor(x/c) + floor(y/c) + floor(z/c), which a
    rotation by 180 degrees about an axis keeps (floor(-u) = -floor(u) - 1 off the cell
    edges), so the box looks the same under every one of `klein_symmetries`.
    """
    half = np.asarray(extents, dtype=np.float64) / 2.0
    tints = np.array([[200, 60, 50], [50, 160, 70], [60, 80, 200]], dtype=np.float64)
    vertices, faces, colours = [], [], []
    for axis in range(3):
        u_axis, v_axis = [a for a in range(3) if a != axis]
        nu, nv = (int(round(2 * half[a] / cell)) for a in (u_axis, v_axis))
        for sign in (-1.0, 1.0):
            for i in range(nu):
                for j in range(nv):
                    quad = []
                    for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                        p = np.zeros(3)
                        p[axis] = sign * half[axis]
                        p[u_axis] = -half[u_axis] + (i + du) * cell
                        p[v_axis] = -half[v_axis] + (j + dv) * cell
                        quad.append(p)
                    centre = np.mean(quad, axis=0)
                    centre[axis] -= sign * 1e-6  # just inside the face
                    parity = int(np.floor(centre / cell).sum()) % 2
                    colour = tints[axis] if parity else 235.0 - 0.3 * tints[axis]
                    base = len(vertices)
                    vertices += quad
                    first, second = (0, 1, 2), (0, 2, 3)
                    if sign < 0:  # keep the winding outwards
                        first, second = (0, 2, 1), (0, 3, 2)
                    faces += [[base + k for k in first], [base + k for k in second]]
                    colours += [colour, colour]
    mesh = trimesh.Trimesh(np.array(vertices), np.array(faces), process=False)
    mesh.visual.face_colors = np.concatenate(
        [np.array(colours), np.full((len(colours), 1), 255.0)], axis=1).astype(np.uint8)
    return mesh


def bench_objects(demo_box, folder):
    """The ObjectSet [demo box, checker box] (the checker box's mesh written to `folder`)."""
    path = Path(folder) / f'{SYMMETRIC}.ply'
    checker_box_mesh().export(path)
    checker = ObjectModel.from_mesh(SYMMETRIC, 2, path,
                                    symmetries=Symmetries(discrete=klein_symmetries()))
    return ObjectSet([replace(demo_box), checker])  # a copy: ObjectSet sets class ids


# --- the sequences ---------------------------------------------------------------------------


@dataclass
class Truth:
    """One object instance in one frame."""

    key: str            # the instance (stable over the sequence)
    class_id: int
    pose: Pose          # T_cam_obj
    visible: float      # visible fraction of its silhouette


@dataclass
class Frame:
    image: np.ndarray   # (H, W, 3) uint8
    stamp: float        # seconds
    truths: list


@dataclass
class Sequence:
    name: str
    camera: CameraModel
    frames: list


def _resting(class_id, objects, x, y, yaw):
    """T_world_obj of an object standing on the table (z = 0) at (x, y), turned by yaw."""
    half_height = objects[class_id].box_size[2] / 2.0
    return Pose(Rotation.from_euler('z', yaw).as_matrix(), [x, y, half_height])


def _layout(objects, s, moving):
    """{key: (class_id, T_world_obj)} and the ball's world position (or None) at phase s.

    s is the time in periods of the choreography (`PERIOD_FRAMES`); every motion repeats
    with it: the demo boxes slide past each other twice a period (the nearer one crossing in
    front of the other), the checker box turns once, the ball crosses in front once.
    """
    demo, sym = 0, 1
    if not moving:
        return {'demo_box_a': (demo, _resting(demo, objects, -0.12, -0.04, 0.6)),
                'demo_box_b': (demo, _resting(demo, objects, 0.12, 0.05, 1.6)),
                'checker_box': (sym, _resting(sym, objects, 0.02, 0.17, 0.3))}, None
    wave = math.sin(2 * math.pi * s)
    instances = {
        'demo_box_a': (demo, _resting(demo, objects, 0.12 * wave, -0.04, 0.6 + 0.5 * wave)),
        'demo_box_b': (demo, _resting(demo, objects, -0.12 * wave, 0.05,
                                      1.6 - 0.4 * math.cos(2 * math.pi * s))),
        'checker_box': (sym, _resting(sym, objects, 0.0, 0.17, 2 * math.pi * s)),
    }
    phase = s % 1.0
    ball = None
    if 0.15 <= phase <= 0.45:
        u = (phase - 0.15) / 0.3
        ball = np.array([-0.2 + 0.4 * u, -0.12, 0.06])
    return instances, ball


def _camera_pose(s, moving):
    """T_cam_world of a camera on an orbit about the table's centre (phase s, periodic)."""
    azimuth = math.radians(-90.0 + (25.0 * math.sin(2 * math.pi * s) if moving else 0.0))
    elevation = math.radians(38.0 + (6.0 * math.sin(4 * math.pi * s) if moving else 0.0))
    view = np.array([math.cos(elevation) * math.cos(azimuth),
                     math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
    centre = np.array([0.0, 0.05, 0.03])
    return Pose(look_at_rotation(view), [0.0, 0.0, 0.55]) @ Pose(np.eye(3), -centre)


def render_sequence(objects, camera, frames, moving=True, seed=0, noise=2.0):
    """A `Sequence` of `frames` rendered frames (see the module doc), stamps at 30 fps.

    The motions repeat every `PERIOD_FRAMES` frames; `noise` is the sensor noise (grey
    levels), drawn anew for every frame.
    """
    rng = np.random.default_rng([seed, 11])
    table = _table_mesh(rng)
    ball = uv_sphere(rings=12, segments=24, radius=0.03)
    ball = MeshData(ball.vertices, ball.faces, colors=np.tile([[0.9, 0.8, 0.2]],
                                                              (len(ball.vertices), 1)))
    background = procedural_background(rng, camera.width, camera.height)
    out = []
    with Renderer(camera.width, camera.height) as renderer:
        for obj in objects:
            renderer.add_mesh(obj.class_id, MeshData.from_trimesh(obj.load_mesh()))
        renderer.add_mesh('table', table)
        renderer.add_mesh('ball', ball)
        lighting = Lighting(ambient=0.45, diffuse=0.55, specular=0.1,
                            direction=(0.2, 0.4, 1.0))
        for i in range(frames):
            s = i / PERIOD_FRAMES
            T_cam_world = _camera_pose(s, moving)
            instances, ball_position = _layout(objects, s, moving)
            keys = list(instances)
            items = []
            for key in keys:
                class_id, T_world_obj = instances[key]
                T = T_cam_world @ T_world_obj
                items.append((class_id, T.R, T.t))
            if ball_position is not None:
                T = T_cam_world @ Pose(np.eye(3), ball_position)
                items.append(('ball', T.R, T.t))
            items.append(('table', T_cam_world.R, T_cam_world.t))
            result = renderer.render(items, camera, lighting, full_counts=True)
            counts = np.bincount(result.instance_ids.ravel() + 1, minlength=len(items) + 1)[1:]
            image = np.where((result.instance_ids >= 0)[..., None], result.rgb, background)
            frame_rng = np.random.default_rng([seed, 23, i])
            image = np.clip(image + frame_rng.normal(0.0, noise, image.shape), 0, 255)
            truths = [Truth(key, items[k][0], Pose(items[k][1], items[k][2]),
                            float(counts[k] / max(result.full_pixel_counts[k], 1)))
                      for k, key in enumerate(keys)]
            out.append(Frame(image.astype(np.uint8), i / FPS, truths))
    return Sequence('moving' if moving else 'static', camera, out)


def _table_mesh(rng, size=1.2):
    """A textured square on z = 0 (world frame), `size` metres across."""
    h = size / 2.0
    vertices = np.array([[-h, -h, 0.0], [h, -h, 0.0], [h, h, 0.0], [-h, h, 0.0]])
    texture = procedural_background(rng, 512, 512)
    return MeshData(vertices, np.array([[0, 1, 2], [0, 2, 3]]),
                    normals=np.tile([[0.0, 0.0, 1.0]], (4, 1)),
                    uvs=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64),
                    texture=texture)


# --- the detectors ---------------------------------------------------------------------------


class SimulatedSymmetricDetector:
    """What a network does on a symmetric object: a random equivalent pose, noise, misses."""

    def __init__(self, obj, camera, seed=0, miss=0.05, phantom=0.1, min_visible=0.3):
        self.obj, self.camera, self.seed = obj, camera, seed
        self.miss, self.phantom, self.min_visible = miss, phantom, min_visible
        self.equivalents = obj.symmetries.discrete_poses()

    def __call__(self, frame, index):
        """The instances of `frame` (the same for a given frame index, whoever asks)."""
        rng = np.random.default_rng([self.seed, 31, index])
        found = []
        for truth in frame.truths:
            if truth.class_id != self.obj.class_id or truth.visible < self.min_visible:
                continue
            if rng.random() < self.miss:
                continue
            pose = truth.pose @ self.equivalents[int(rng.integers(len(self.equivalents)))]
            found.append(self._instance(self._noisy(pose, rng), 0.8 + 0.1 * rng.random()))
        if rng.random() < self.phantom:
            t = np.array([rng.uniform(-0.15, 0.15), rng.uniform(-0.1, 0.1),
                          rng.uniform(0.45, 0.75)])
            found.append(self._instance(Pose(Rotation.random(random_state=rng).as_matrix(), t),
                                        0.55 + 0.3 * rng.random()))
        return found

    def _noisy(self, pose, rng):
        ray = pose.t / np.linalg.norm(pose.t)
        t = pose.t + rng.normal(0.0, 0.002, 3) + ray * rng.normal(0.0, 0.006)
        R = Rotation.from_rotvec(rng.normal(0.0, math.radians(2.0), 3)).as_matrix() @ pose.R
        return Pose(R, t)

    def _instance(self, pose, score):
        obj = self.obj
        keypoints = self.camera.project(pose.transform(obj.keypoints))
        return ObjectPose(obj.name, obj.class_id, obj.object_id, float(score), keypoints,
                          box_2d(keypoints[:8]), pose.R, pose.t, 1.0, 9, obj.box_size,
                          obj.keypoints[8].copy())


# --- running and scoring ---------------------------------------------------------------------


def run_path(sequence, detect, tracker_config=None, objects=None):
    """Run one path: outputs [(identity, ObjectPose)] per frame, seconds, runs, tracker ms.

    runs: the network runs by reason; tracker ms: the tracker's own time per frame per live
    track.

    detect(index) -> instances of frame `index`; tracker_config None: tracking off.
    """
    tracker = Tracker(objects, tracker_config) if tracker_config is not None else None
    outputs, seconds, tracker_ms, runs = [], [], [], {}
    for index, frame in enumerate(sequence.frames):
        start = time.perf_counter()
        if tracker is None:
            found = sorted((p for p in detect(index) if p.score >= MIN_SCORE),
                           key=lambda p: -p.score)
            runs['every frame'] = runs.get('every frame', 0) + 1
            ranks, named = {}, []
            for pose in found:  # as instance_names: the rank of the object in this frame
                k = ranks.get(pose.object_name, 0)
                ranks[pose.object_name] = k + 1
                named.append((f'{pose.object_name}_{k}', pose))
        else:
            found = tracker.step(frame.image, sequence.camera, frame.stamp,
                                 lambda index=index: [p for p in detect(index)
                                                      if p.score >= MIN_SCORE])
            named = [(pose.instance_name, pose) for pose in found]
            if tracker.tracks:
                tracker_ms.append(1e3 * tracker.timings['tracker'] / len(tracker.tracks))
        seconds.append(time.perf_counter() - start)
        outputs.append(named)
    if tracker is not None:
        runs = dict(tracker.network_reasons)
    return outputs, np.asarray(seconds), runs, np.asarray(tracker_ms)


def match_frame(frame, named, objects):
    """{truth key: (identity, ObjectPose)} and the unmatched outputs of one frame."""
    matched, false = {}, []
    for class_id in {t.class_id for t in frame.truths} | {p.class_id for _, p in named}:
        truths = [t for t in frame.truths if t.class_id == class_id]
        outs = [(n, p) for n, p in named if p.class_id == class_id]
        gate = MATCH_GATE * objects[class_id].diameter
        taken = set()
        if truths and outs:
            cost = np.array([[np.linalg.norm(p.t - t.pose.t) for _, p in outs] for t in truths])
            for a, b in zip(*linear_sum_assignment(cost)):
                if cost[a, b] <= gate:
                    matched[truths[a].key] = outs[b]
                    taken.add(b)
        false += [outs[b] for b in range(len(outs)) if b not in taken]
    return matched, false


def score_path(sequence, outputs, objects, points):
    """ADD pass rates, identity switches, false poses and tracks, jitter and flips."""
    passes = {obj.name: [] for obj in objects}
    identities, history, false_poses = {}, {}, 0
    identity_frames = {}
    for frame, named in zip(sequence.frames, outputs):
        matched, false = match_frame(frame, named, objects)
        false_poses += len(false)
        for identity, _pose in false:
            identity_frames.setdefault(identity, [0, 0])[1] += 1
        for truth in frame.truths:
            obj = objects[truth.class_id]
            hit = matched.get(truth.key)
            if hit is not None:
                identity, pose = hit
                identity_frames.setdefault(identity, [0, 0])[0] += 1
                identities.setdefault(truth.key, []).append(identity)
                history.setdefault(truth.key, []).append((frame.stamp, pose))
            if truth.visible >= PRESENT:
                passes[obj.name].append(hit is not None and metrics.add_auto(
                    hit[1].pose, truth.pose, obj, points[truth.class_id])
                    < metrics.ADD_THRESHOLD * obj.diameter)
    switches = sum(sum(a != b for a, b in zip(ids, ids[1:])) for ids in identities.values())
    all_passes = [p for values in passes.values() for p in values]
    report = {
        'add_pass_rate': round(float(np.mean(all_passes)), 4) if all_passes else None,
        'add_pass_rate_by_object': {name: round(float(np.mean(v)), 4) if v else None
                                    for name, v in passes.items()},
        'scored_object_frames': len(all_passes),
        'identity_switches': int(switches),
        'false_poses': int(false_poses),
        'false_identities': sum(1 for good, bad in identity_frames.values() if bad > good),
    }
    report['jitter'] = _jitter(history, sequence, objects)
    return report


def _jitter(history, sequence, objects):
    """RMS frame-to-frame change per object (mm, degrees up to symmetry) and raw flips."""
    classes = {t.key: t.class_id for t in sequence.frames[0].truths}
    out = {}
    for key, samples in history.items():
        symmetries = objects[classes[key]].symmetries
        dt, dr, flips = [], [], 0
        for (s0, a), (s1, b) in zip(samples, samples[1:]):
            if s1 - s0 > 1.5 / FPS:
                continue  # consecutive frames only
            dt.append(np.linalg.norm(b.t - a.t) * 1e3)
            dr.append(math.degrees(rotation_angle(
                closest_equivalent(b.pose, a.pose, symmetries).R, a.R)))
            flips += math.degrees(rotation_angle(b.R, a.R)) > FLIP_DEG
        if dt:
            out[key] = {'translation_mm_rms': round(float(np.sqrt(np.mean(np.square(dt)))), 3),
                        'rotation_deg_rms': round(float(np.sqrt(np.mean(np.square(dr)))), 3),
                        'flips': int(flips), 'pairs': len(dt)}
    return out


def _timing(seconds, runs, tracker_ms, frames):
    total = sum(runs.values())
    return {
        'output_fps': round(frames / float(seconds.sum()), 2),
        'latency_ms_p50': round(float(np.percentile(seconds, 50)) * 1e3, 2),
        'latency_ms_p99': round(float(np.percentile(seconds, 99)) * 1e3, 2),
        'network_runs': int(total),
        'network_runs_by_reason': runs,
        'network_run_share': round(total / frames, 3),
        'tracker_ms_per_object_median': (round(float(np.median(tracker_ms)), 3)
                                         if len(tracker_ms) else None),
        'tracker_ms_per_object_p95': (round(float(np.percentile(tracker_ms, 95)), 3)
                                      if len(tracker_ms) else None),
    }


# --- the benchmark ---------------------------------------------------------------------------


def bench_tracking(model=None, frames=90, size=(640, 480), network_every=5, seed=0,
                   device='cpu', tracker_config=None, log=None):
    """The side-by-side report (see the module doc) as a dict."""
    log = log or (lambda _line: None)
    estimator = Estimator.from_bundle(model or default_model(), device=device)
    config = replace(tracker_config or TrackerConfig(), network_every=network_every)
    with tempfile.TemporaryDirectory() as folder:
        objects, camera = _setup(estimator, folder, size)
        points = [obj.model_points(1000) for obj in objects]
        detector = SimulatedSymmetricDetector(objects[1], camera, seed)
        sequences = []
        for moving in (True, False):
            start = time.perf_counter()
            sequences.append(render_sequence(objects, camera, frames, moving, seed))
            log(f'bench tracking: rendered the {sequences[-1].name} sequence ({frames} frames '
                f'of {size[0]}x{size[1]}) in {time.perf_counter() - start:.1f} s')
    estimator(sequences[0].frames[0].image, camera)  # warm-up, not timed
    paths = {'network_only': None,
             'tracking_network_every_frame': replace(config, network_every=1),
             'tracking': config}
    report = {
        'benchmark': 'tracking', 'model': str(model or default_model()),
        'device': estimator.device, 'image_size': list(size), 'frames_per_sequence': frames,
        'fps_of_the_stamps': FPS, 'network_every': network_every, 'seed': seed,
        'objects': {'demo_box': 'two instances, found by the network',
                    SYMMETRIC: 'one instance, symmetric (180 degrees about x, y, z); found by '
                               'a simulated detector (true pose turned by a random symmetry, '
                               'noise 2 mm / 6 mm depth / 2 deg, 5% missed, a phantom on 10% '
                               'of the network runs)'},
        'tracker_config': _config_dict(config),
        'sequences': {},
    }
    for sequence in sequences:
        def detect(index, sequence=sequence):
            frame = sequence.frames[index]
            return list(estimator(frame.image, camera)) + detector(frame, index)

        results = {}
        for name, path_config in paths.items():
            start = time.perf_counter()
            outputs, seconds, runs, tracker_ms = run_path(sequence, detect, path_config,
                                                          objects)
            results[name] = {**score_path(sequence, outputs, objects, points),
                             **_timing(seconds, runs, tracker_ms, len(sequence.frames))}
            if sequence.name != 'static':
                del results[name]['jitter']
            log(f'bench tracking: {sequence.name} / {name}: ADD {results[name]["add_pass_rate"]}'
                f', {results[name]["output_fps"]} fps ({time.perf_counter() - start:.1f} s)')
        report['sequences'][sequence.name] = results
    report['targets'] = _targets(report)
    report['machine'] = machine_info()
    return report


def _setup(estimator, folder, size):
    objects = bench_objects(estimator.objects[0], folder)
    width, height = size
    focal = 572.0 * width / 640.0
    camera = CameraModel.from_intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0,
                                         width, height)
    return objects, camera


def _config_dict(config):
    return {key: (vars(value) if hasattr(value, '__dataclass_fields__') else value)
            for key, value in vars(config).items()}


def _targets(report):
    """The issue's targets, each with the measured figures and whether it is met."""
    moving = report['sequences']['moving']
    static = report['sequences']['static']
    on, off = moving['tracking'], moving['network_only']

    def jitter(path, key):
        values = [v[key] for v in static[path]['jitter'].values()]
        return round(float(np.mean(values)), 3) if values else None

    out = {'poses_fps_at_least_25': {'measured': on['output_fps'],
                                     'met': on['output_fps'] >= 25.0}}
    if on['add_pass_rate'] is not None and off['add_pass_rate'] is not None:
        gap = round(100.0 * (off['add_pass_rate'] - on['add_pass_rate']), 2)
        out['add_within_5_points_of_network_every_frame'] = {
            'points_below_network_only': gap, 'met': gap <= 5.0}
    for key in ('translation_mm_rms', 'rotation_deg_rms'):
        tracked, plain = jitter('tracking', key), jitter('network_only', key)
        out[f'jitter_{key}_at_most_half'] = {
            'tracking': tracked, 'network_only': plain,
            'met': None if tracked is None or plain is None else tracked <= plain / 2.0}
    out['tracker_ms_per_object_under_3'] = {
        'measured_median': on['tracker_ms_per_object_median'],
        'met': (on['tracker_ms_per_object_median'] or 0.0) < 3.0}
    return out


def soak(model=None, frames=100_000, size=(640, 480), network_every=5, seed=0,
         device='cpu', max_seconds=None, sequence_frames=PERIOD_FRAMES, log=None):
    """The tracking path over `frames` frames; memory growth and latency drift, as a dict.

    The moving sequence is played forwards and backwards (the motion stays continuous) with
    stamps counting up at 30 fps. Stops early after `max_seconds` of wall time when given.
    """
    log = log or (lambda _line: None)
    estimator = Estimator.from_bundle(model or default_model(), device=device)
    with tempfile.TemporaryDirectory() as folder:
        objects, camera = _setup(estimator, folder, size)
        sequence = render_sequence(objects, camera, min(sequence_frames, frames), True, seed)
    detector = SimulatedSymmetricDetector(objects[1], camera, seed)
    tracker = Tracker(objects, TrackerConfig(network_every=network_every))
    order = list(range(len(sequence.frames))) + list(range(len(sequence.frames) - 2, 0, -1))
    # (wall time, latency) per frame, written in place: a list of tuples grows by about 130
    # bytes a frame (12.7 MB from frame 1,000 to 100,000, measured), which would be counted as
    # the pipeline's growth. np.full touches every page now, before the first memory reading.
    latencies = np.full((frames, 2), np.nan)
    rss, started = {}, time.perf_counter()
    done = 0
    for i in range(frames):
        index = order[i % len(order)]
        frame = sequence.frames[index]
        start = time.perf_counter()
        tracker.step(frame.image, camera, i / FPS,
                     lambda frame=frame, index=index: [
                         p for p in list(estimator(frame.image, camera)) + detector(frame, index)
                         if p.score >= MIN_SCORE])
        now = time.perf_counter()
        latencies[i] = now - started, now - start
        done = i + 1
        if done in (1000,) or done % 5000 == 0:
            rss[done] = resident_mb()
            log(f'bench tracking soak: {done} frames, {rss[done]:.1f} MB resident, '
                f'{now - started:.0f} s')
        if max_seconds is not None and now - started > max_seconds:
            break
    rss[done] = resident_mb()
    elapsed = time.perf_counter() - started
    wall, seconds = latencies[:done, 0], latencies[:done, 1]
    first = seconds[wall <= 60.0]
    rest = seconds[wall > 60.0]
    report = {
        'benchmark': 'tracking_soak', 'frames_asked': frames, 'frames_done': done,
        'stopped_early': done < frames, 'elapsed_s': round(elapsed, 1),
        'output_fps': round(done / elapsed, 2), 'network_runs': tracker.network_runs,
        'live_tracks_at_end': len(tracker.tracks), 'track_ids_used': tracker.next_id,
        'resident_mb': {str(k): round(v, 1) for k, v in sorted(rss.items())},
        'latency_ms_p99_first_minute': round(float(np.percentile(first, 99)) * 1e3, 2),
        'latency_ms_p99_after_first_minute': (round(float(np.percentile(rest, 99)) * 1e3, 2)
                                              if len(rest) else None),
    }
    if 1000 in rss:
        report['resident_growth_mb_after_frame_1000'] = round(rss[done] - rss[1000], 2)
    if len(rest):
        report['latency_p99_change'] = round(float(np.percentile(rest, 99))
                                             / float(np.percentile(first, 99)) - 1.0, 3)
    # p99 per window of 5,000 frames: a drift grows steadily, another process's load on a
    # shared machine comes and goes.
    report['latency_ms_p99_per_5000_frames'] = [
        round(float(np.percentile(seconds[i:i + 5000], 99)) * 1e3, 1)
        for i in range(0, done, 5000)]
    report['machine'] = machine_info()
    return report


def resident_mb():
    """This process's resident memory now (MB), from /proc; 0 where there is no /proc."""
    try:
        pages = int(Path('/proc/self/statm').read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
