"""`pose6d demo`: the whole system on a held-out rendered sequence, in a minute, on a CPU.

The camera circles the demo box (a smooth trajectory, like a hand-held video) over procedural
backgrounds that training never saw, with a shape passing in front of it for part of the
sequence. Every frame goes through the bundled model and the estimator; the command writes
annotated frames (the estimate, the true box in thin white, and the frame's ADD(-S) and 2D
projection verdicts as badges), an animated GIF small enough for a README, the poses and a
metrics summary computed against the rendered ground truth, and prints where they are.
"""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import time

import cv2
import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from pose6d_ros.core.data.augment import composite, Photometric, procedural_background
from pose6d_ros.core.data.render import Lighting, Renderer
from pose6d_ros.core.data.scenes import (
    _random_shape,
    add_object_meshes,
    Instance,
    look_at_rotation,
    render_scene,
    Scene,
    SceneConfig,
    silhouette_points,
)
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.files import make_temp_dir, move_into_place
from pose6d_ros.core.geometry import metrics
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.draw import draw_box, draw_poses, draw_verdicts, TRUTH_RGB
from pose6d_ros.core.geometry.poses import Pose
from pose6d_ros.core.inference.bundle import default_model
from pose6d_ros.core.inference.estimator import Estimator

UNOCCLUDED = 0.95  # visible fraction above which a view counts as unoccluded
OUTPUTS = ('frames', 'demo.gif', 'poses.json', 'metrics.json')  # all that a demo run writes
GIF_WIDTH = 320          # pixels at most: the default 24 frames make a 0.75 MB GIF, not 4 MB
GIF_PALETTE_FRAMES = 16  # frames, at most, that the GIF's one palette is made from


def trajectory(frames, seed=0):
    """Poses T_cam_obj of a smooth orbit: azimuth sweep, rising and falling elevation."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0.0, 2.0 * np.pi, 4)
    poses = []
    for i in range(frames):
        s = i / max(frames - 1, 1)
        azimuth = phase[0] + 2.0 * np.pi * 0.85 * s
        elevation = np.radians(45.0 + 35.0 * np.sin(phase[1] + 2.0 * np.pi * s))
        distance = 0.34 + 0.06 * np.sin(phase[2] + 4.0 * np.pi * s)
        view = np.array([np.cos(elevation) * np.cos(azimuth),
                         np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
        roll = Rotation.from_euler('z', 20.0 * np.sin(phase[3] + 2.0 * np.pi * s), degrees=True)
        R = roll.as_matrix() @ look_at_rotation(view)
        drift = np.array([0.04 * np.sin(2.0 * np.pi * s), 0.025 * np.cos(3.0 * np.pi * s), 0.0])
        poses.append(Pose(R, drift + [0.0, 0.0, distance]))
    return poses


def render_sequence(objects, camera, frames, seed=0, occluded_share=0.3):
    """Rendered frames [(image, Pose ground truth, visible fraction)] of the first object."""
    rng = np.random.default_rng([seed, 7])
    obj = objects[0]
    points = silhouette_points(obj)
    backgrounds = [procedural_background(rng, camera.width, camera.height) for _ in range(3)]
    occluded = set(range(int(frames * (1 - occluded_share)), frames))
    photometric = Photometric(blur_probability=0.2, motion_blur_probability=0.0,
                              jpeg_probability=0.0)
    sequence = []
    with Renderer(camera.width, camera.height) as renderer:
        add_object_meshes(renderer, objects)
        for i, pose in enumerate(trajectory(frames, seed)):
            shapes = []
            if i in occluded:  # a ball passing in front of the lower part of the box
                s = (i - min(occluded)) / max(len(occluded) - 1, 1)
                centre = pose.t * 0.75 + np.array([-0.03 + 0.06 * s, 0.012, 0.0])
                shapes.append(_random_shape(np.random.default_rng([seed, 99]), 'occluder',
                                            0.018, centre))
            scene = Scene([Instance(obj.class_id, pose.R, pose.t)], shapes,
                          Lighting.random(np.random.default_rng([seed, i // 8])),
                          [obj.object_id], [points],
                          SceneConfig(min_visible_pixels=1, min_visible_fraction=0.0))
            rgb, _depth, ids, labels = render_scene(renderer, scene, camera)
            frame_rng = np.random.default_rng([seed, i])
            background = backgrounds[(i * len(backgrounds)) // frames]
            image = photometric.apply(composite(rgb, ids >= 0, background, frame_rng),
                                      frame_rng)
            visible = labels[0].visib_fract if labels else 0.0
            sequence.append((image, pose, visible))
    return sequence


def check_output_folder(out, force=False):
    """Refuse an output folder that a demo run would replace, unless `force`.

    A run replaces `out` as a whole, so a non-empty folder (an earlier demo run's included)
    is replaced only with `force`; a file is never replaced.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise Pose6dError(f'--out {out} is a file; expected a folder for the demo outputs')
    if force or not out.exists():
        return
    names = sorted(p.name for p in out.iterdir())
    foreign = [name for name in names if name not in OUTPUTS]
    if foreign:
        raise Pose6dError(f'--out {out} holds files that are not demo outputs ('
                          f'{", ".join(foreign[:3])}{", ..." if len(foreign) > 3 else ""}); '
                          'choose another folder or pass --force to replace it')
    if names:
        raise Pose6dError(f'--out {out} holds an earlier demo run; pass --force to replace it, '
                          'or choose another folder')


def run_demo(out=None, model=None, frames=24, size=(640, 480), seed=2026, device='auto',
             log=print, force=False):
    """Run the demo; returns the metrics summary (also written to out/metrics.json).

    `out` is replaced as a whole once every output is written; an existing non-empty one
    only with `force` (see `check_output_folder`).
    """
    started = time.perf_counter()
    model = Path(model) if model else default_model()
    out = Path(out) if out else Path('pose6d_demo')
    check_output_folder(out, force)
    estimator = Estimator.from_bundle(model, device=device)
    obj = estimator.objects[0]
    width, height = size
    focal = 572.0 * width / 640.0  # LINEMOD-like intrinsics, scaled with the image size
    camera = CameraModel.from_intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0,
                                         width, height)
    log(f'pose6d demo: {frames} frames of {obj.name} at {width}x{height}, model {model} '
        f'on {estimator.device}')
    sequence = render_sequence(estimator.objects, camera, frames, seed)
    points = obj.model_points(2000)
    gif_size = (min(width, GIF_WIDTH), max(1, round(height * min(width, GIF_WIDTH) / width)))
    gif_camera = camera.resized(*gif_size)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(out.parent, '.pose6d_demo.')
    try:
        (staging / 'frames').mkdir()
        records, gif_frames, seconds = [], [], []
        for i, (image, truth, visible) in enumerate(sequence):
            if i == 0:
                estimator(image, camera)  # warm-up, not timed
            start = time.perf_counter()
            found = estimator(image, camera)
            seconds.append(time.perf_counter() - start)
            best = next((p for p in found if p.object_id == obj.object_id), None)
            record = {'frame': i, 'visib_fract': round(float(visible), 4),
                      **score_frame(best, truth, obj, points, camera)}
            records.append(record)
            _write_png(staging / 'frames' / f'{i:04d}.png',
                       annotate_frame(image, found, truth, obj, camera, record))
            # Drawn again at the GIF's size: lines and badges stay sharp, not scaled down.
            small = cv2.resize(image, gif_size, interpolation=cv2.INTER_AREA)
            gif_frames.append(annotate_frame(small, found, truth, obj, gif_camera, record))
        summary = _summary(records, seconds, obj, model, estimator.device, frames, size,
                           time.perf_counter() - started)
        write_gif(staging / 'demo.gif', gif_frames)
        (staging / 'poses.json').write_text(json.dumps(records, indent=1))
        (staging / 'metrics.json').write_text(json.dumps(summary, indent=2))
        move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary['elapsed_s'] = round(time.perf_counter() - started, 1)
    log(format_summary(summary, out))
    return summary


def score_frame(best, truth, obj, points, camera):
    """The verdicts of one frame's estimate `best` (ObjectPose or None) against `truth` (Pose).

    Returns the poses.json fields: detected, truth and, with an estimate, estimate, add (m),
    proj_2d (px), add_passed (ADD(-S) < 0.1 diameter) and proj_2d_passed (< 5 px).
    """
    record = {'detected': best is not None,
              'truth': {'t': truth.t.tolist(), 'quat_xyzw': truth.quat_xyzw.tolist()}}
    if best is not None:
        add = metrics.add_auto(best.pose, truth, obj, points)
        proj = metrics.projection_2d(best.pose, truth, points, camera)
        record.update(estimate=best.to_dict(), add=add, proj_2d=proj,
                      add_passed=add < metrics.ADD_THRESHOLD * obj.diameter,
                      proj_2d_passed=proj < metrics.PROJ_2D_THRESHOLD)
    return record


def annotate_frame(image_rgb, found, truth, obj, camera, record):
    """A copy of the frame with the estimates, the true box and the frame's verdicts.

    found: the estimator's ObjectPoses (drawn as `pose6d predict` draws them); truth: the
    Pose T_cam_obj of `obj`, its box drawn in thin white lines over the estimate; record:
    `score_frame`'s verdicts, drawn as badges in the top-left corner (a missed object fails
    both, as in metrics.json).
    """
    overlay = draw_poses(image_rgb, found, camera)
    draw_box(overlay, camera.project(truth.transform(obj.keypoints[:8])), TRUTH_RGB, 1)
    add_name = 'ADD-S' if obj.uses_add_s else 'ADD'
    draw_verdicts(overlay, [(add_name, record.get('add_passed', False)),
                            ('2D', record.get('proj_2d_passed', False))])
    return overlay


def _summary(records, seconds, obj, model, device, frames, size, elapsed):
    def rates(subset):
        if not subset:
            return {'frames': 0}
        return {'frames': len(subset),
                'detected': float(np.mean([r['detected'] for r in subset])),
                'add_0.1d': float(np.mean([r.get('add_passed', False) for r in subset])),
                'proj_2d_5px': float(np.mean([r.get('proj_2d_passed', False) for r in subset]))}

    unoccluded = [r for r in records if r['visib_fract'] >= UNOCCLUDED]
    occluded = [r for r in records if r['visib_fract'] < UNOCCLUDED]
    detected = [r for r in records if r['detected']]
    return {
        'object': obj.name, 'model': str(model), 'device': device, 'frames': frames,
        'image_size': list(size), 'unoccluded': rates(unoccluded), 'occluded': rates(occluded),
        'all': rates(records),
        'median_add_mm': (round(float(np.median([r['add'] for r in detected])) * 1e3, 2)
                          if detected else None),
        'median_proj_2d_px': (round(float(np.median([r['proj_2d'] for r in detected])), 2)
                              if detected else None),
        'fps': round(1.0 / float(np.median(seconds)), 2),
        'elapsed_s': round(elapsed, 1),
    }


def format_summary(summary, out):
    """What the demo prints at the end."""
    def line(name, rates):
        if not rates['frames']:
            return f'  {name}: no frames'
        return (f'  {name} ({rates["frames"]} frames): detected {rates["detected"]:.0%}, '
                f'ADD(-S)@0.1d {rates["add_0.1d"]:.0%}, 2D projection@5px '
                f'{rates["proj_2d_5px"]:.0%}')

    return '\n'.join([
        line('unoccluded views', summary['unoccluded']),
        line('partly occluded views', summary['occluded']),
        f'  median ADD {summary["median_add_mm"]} mm, median 2D projection error '
        f'{summary["median_proj_2d_px"]} px, {summary["fps"]} fps on {summary["device"]}, '
        f'{summary["elapsed_s"]} s in all',
        f'wrote {out}/: frames/*.png, demo.gif, poses.json, metrics.json',
    ])


def _write_png(path, image_rgb):
    cv2.imwrite(str(path), np.ascontiguousarray(image_rgb[:, :, ::-1]))


def write_gif(path, images, fps=8):
    """An animated GIF of RGB frames (all the same size), small enough to embed in a README.

    The caller keeps the frames small (GIF_WIDTH, most of the saving). One 256-colour palette
    made from up to GIF_PALETTE_FRAMES of the frames serves them all, with error diffusion
    against banding (without it the file is half as big but the backgrounds posterise).
    Storing only what changed saves little here: the rendered noise changes every pixel.
    """
    frames = [Image.fromarray(image) for image in images]
    width, height = frames[0].size
    sample = frames[::-(-len(frames) // GIF_PALETTE_FRAMES)]
    strip = Image.new('RGB', (width, height * len(sample)))
    for i, frame in enumerate(sample):
        strip.paste(frame, (0, i * height))
    palette = strip.quantize(256, method=Image.Quantize.FASTOCTREE)
    frames = [frame.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
              for frame in frames]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps),
                   loop=0, optimize=True)
