"""Synthetic training sets in BOP format (`pose6d synth`) and their benchmark (`bench synth`).

Each image: a random scene (scenes.py) rendered offscreen under its lights, pasted on a
photograph or a procedural background (darkened by the shadows of what was rendered, when
configured), then photometric jitter and camera effects (augment.py). Image i is drawn from a
generator seeded with (seed, i) only, so the output does not depend on the number of
workers, and an interrupted run continues exactly where it stopped.

Output folder (a BOP dataset; read it back with `BopDataset(out)`)::

    synth.json                     settings of the run (a rerun must match them to resume)
    summary.json                   images, instances, mean visibility, speed (after a run)
    models/models_info.json        the object set in millimetres (BOP)
    models/obj_XXXXXX.ply          each mesh in millimetres, copied (see `write_models`)
    models/objects.yaml            the same set in our YAML format (keeps the object names)
    train/000000/rgb/*.jpg|png, mask_visib/*.png, scene_gt.json, scene_camera.json,
                 scene_gt_info.json

Workers are processes started with 'spawn', so each creates its own OpenGL context after
it starts; they render, composite and augment whole images, and the one BopWriter in the
main process writes them in image order.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
import hashlib
import json
import multiprocessing
import os
from pathlib import Path
import shutil
import signal
import tempfile
import time

import cv2
import numpy as np
from tqdm import tqdm
import trimesh
import yaml

from pose6d_ros.core.config_fields import load_yaml
from pose6d_ros.core.cpus import machine_info
from pose6d_ros.core.data.augment import (
    apply_gains,
    Backgrounds,
    composite,
    Photometric,
    procedural_background,
    Shadows,
)
from pose6d_ros.core.data.bop import Annotation, BopWriter
from pose6d_ros.core.data.render import MeshData, Renderer
from pose6d_ros.core.data.scenes import (
    LightingConfig,
    render_scene,
    sample_scene,
    SceneConfig,
    set_silhouette_points,
    silhouette_points,
)
from pose6d_ros.core.errors import ObjectModelError, Pose6dError
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectSet

SETTINGS_FILE = 'synth.json'
SUMMARY_FILE = 'summary.json'
SPLIT = 'train'
SCENE_ID = 0
DEFAULT_FOCAL_640 = 572.0      # LINEMOD-like focal length at 640 pixels wide
IMAGE_FORMATS = ('jpg', 'png')
_FORMAT_VERSION = 1
_CONFIG_SECTIONS = ('scene', 'lighting', 'shadows', 'photometric', 'backgrounds')


@dataclass
class SynthConfig:
    """Everything a config file (--config scene.yaml) can set, by section."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    photometric: Photometric = field(default_factory=Photometric)
    # Chance of a procedural background although photographs are given.
    procedural_probability: float = 0.2
    # The lights of each scene (default: one white light near the viewing direction).
    lighting: LightingConfig = field(default_factory=LightingConfig)
    # Approximate shadows on the background (default: none).
    shadows: Shadows = field(default_factory=Shadows)

    @classmethod
    def load(cls, path):
        """Read a YAML file with optional sections (scene, lighting, shadows, ...)."""
        path = Path(path)
        if not path.is_file():
            raise Pose6dError(f'config file not found: {path}')
        data = load_yaml(path, 'config file') or {}
        try:
            return cls.from_dict(data)
        except Pose6dError as exc:
            raise Pose6dError(f'{path}: {exc}') from None

    @classmethod
    def from_dict(cls, data):
        """Build from a mapping of sections; unknown sections or keys are an error."""
        if not isinstance(data, dict):
            raise Pose6dError(f'expected a mapping with sections {", ".join(_CONFIG_SECTIONS)}'
                              f'; got {type(data).__name__}')
        unknown = sorted(set(data) - set(_CONFIG_SECTIONS))
        if unknown:
            raise Pose6dError(f'unknown section(s) {", ".join(unknown)}; expected some of '
                              f'{", ".join(_CONFIG_SECTIONS)}')
        backgrounds = data.get('backgrounds') or {}
        if not isinstance(backgrounds, dict) or set(backgrounds) - {'procedural_probability'}:
            raise Pose6dError('backgrounds must be a mapping with only procedural_probability '
                              f'(0..1); got {backgrounds!r}')
        probability = backgrounds.get('procedural_probability', 0.2)
        if (isinstance(probability, bool) or not isinstance(probability, (int, float))
                or not 0.0 <= probability <= 1.0):
            raise Pose6dError('backgrounds.procedural_probability must be a number in [0, 1]; '
                              f'got {probability!r}')
        return cls(SceneConfig.from_dict(data.get('scene')),
                   Photometric.from_dict(data.get('photometric')), float(probability),
                   LightingConfig.from_dict(data.get('lighting')),
                   Shadows.from_dict(data.get('shadows')))

    def to_dict(self):
        """Plain values, as `from_dict` reads them.

        The lighting and shadows sections are left out at their defaults (as the fields of
        the other sections that came later): a synth run records the settings that a rerun must
        match to continue it, and runs made before those sections existed continue.
        """
        values = {'scene': self.scene.to_dict(), 'photometric': self.photometric.to_dict(),
                  'backgrounds': {'procedural_probability': self.procedural_probability}}
        if self.lighting != LightingConfig():
            values['lighting'] = self.lighting.to_dict()
        if self.shadows != Shadows():
            values['shadows'] = self.shadows.to_dict()
        return values


def synth_camera(width=640, height=480):
    """A LINEMOD-like pinhole camera (fx = fy = 572 at 640 wide), principal point centred."""
    focal = DEFAULT_FOCAL_640 * width / 640.0
    return CameraModel.from_intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0,
                                       width, height)


def load_objects(path, object_ids=None):
    """The object set at `path` (or its subset `object_ids`), every mesh loaded and checked."""
    objects = ObjectSet.load(path)
    if object_ids:
        try:
            objects = ObjectSet([objects.by_id(i) for i in dict.fromkeys(object_ids)])
        except ObjectModelError as exc:
            raise ObjectModelError(f'object ids to synthesise: {exc}') from None
    for obj in objects:
        if obj.mesh_path is None:
            raise ObjectModelError(
                f'object {obj.name!r} (id {obj.object_id}) has no mesh; synth renders meshes: '
                f'expected obj_{obj.object_id:06d}.ply beside models_info.json or a "mesh" '
                'entry in the objects YAML')
        # A clear ObjectModelError for a missing, empty or faceless mesh (ObjectSet.load has
        # refused implausible sizes, e.g. a mesh in millimetres without `scale: 0.001`).
        obj.load_mesh()
    return objects


# --- the run ----------------------------------------------------------------------------------


def synthesize(objects, out, images, backgrounds=None, camera=None, seed=0, workers=1,
               force=False, config=None, object_ids=None, image_format='jpg', progress=True,
               log=print):
    """Render `images` images into the BOP folder `out`; returns the summary (a dict).

    objects: objects YAML or BOP models_info.json (or its folder). backgrounds: a folder of
    photographs, or None for procedural backgrounds. camera: CameraModel (default
    `synth_camera()`); images are rendered undistorted with its K. config: SynthConfig.
    object_ids: synthesise only these objects (default: config.scene.object_ids, else all).
    A rerun with the same settings continues an interrupted run (or adds images up to a
    larger `images`; a run already holding more than `images` is refused, one holding as
    many is left as it is); a non-empty `out` that is not such a run is refused unless `force`,
    which deletes what synth writes there (train/, models/, synth.json, summary.json).
    """
    started = time.perf_counter()
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise Pose6dError(f'number of images must be a positive integer; got {images!r}')
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise Pose6dError(f'seed must be a non-negative integer; got {seed!r}')
    if image_format not in IMAGE_FORMATS:
        raise Pose6dError(f'image format must be one of {", ".join(IMAGE_FORMATS)}; '
                          f'got {image_format!r}')
    config = SynthConfig() if config is None else config
    camera = synth_camera() if camera is None else camera
    if camera.has_distortion:
        # The renderer makes ideal pinhole images: label them with the same K and no D.
        log(f'note: the camera has lens distortion {camera.D.tolist()}; synthetic images are '
            'rendered undistorted, for the same K without distortion')
        camera = CameraModel(camera.K, None, camera.width, camera.height)
    object_ids = list(object_ids or config.scene.object_ids or [])
    object_set = load_objects(objects, object_ids)
    photos = Backgrounds(backgrounds) if backgrounds is not None else None
    out = Path(out)
    settings = _settings(objects, object_set, camera, seed, backgrounds, photos, image_format,
                         config)
    resume = _prepare_output(out, settings, force)

    spec = _Spec(*_prepared_objects(object_set), camera, seed,
                 None if backgrounds is None else str(backgrounds),
                 replace(config.scene, object_ids=None), config.photometric,
                 config.procedural_probability, config.lighting, config.shadows)
    writer = BopWriter(out, SPLIT, SCENE_ID, image_ext=image_format, objects=object_set,
                       resume=resume, jpeg_quality=95)
    start = writer.next_image_id
    if start > images:
        # --images is the size of the set: going on with more than asked would be a surprise.
        writer.close()
        raise Pose6dError(
            f'output folder {out} already holds {start} images, more than the {images} asked '
            f'for (left as it is); pass --images {start} or more to keep and extend them, '
            f'--force to delete them and make {images}, or choose another --out')
    if resume and start == images:
        log(f'note: {out} already holds all {images} images; nothing to do (a larger '
            '--images adds more)')
    write_models(object_set, out / 'models')
    timing = {'first': None, 'last': None}
    bar = _progress_bar(images, start, progress)

    def write(sample):
        _write_sample(writer, camera, sample)
        now = time.perf_counter()
        timing['first'] = timing['first'] or now
        timing['last'] = now
        bar.update(1)

    try:
        if start < images:
            run_workers(spec, start, images, workers, write)
    except KeyboardInterrupt:
        bar.close()
        log(f'interrupted after {writer.next_image_id} of {images} images; run the same '
            'command again to continue')
        raise
    finally:
        bar.close()
        writer.close()  # the json files then list every image on disk: a rerun continues
    elapsed = time.perf_counter() - started
    summary = _summary(out, settings, images, writer.next_image_id - start, workers, elapsed,
                       timing, started)
    _write_json(out / SUMMARY_FILE, summary)
    return summary


def render_frames(object_set, camera, count, seed=0, config=None, backgrounds=None):
    """`count` synthetic images (H, W, 3) uint8 RGB with their labels, in this process.

    For benchmarks and the demo: the same drawing, rendering, compositing and augmentation as
    `pose6d synth`, without writing files. Returns a list of (image, labels); a label is a dict
    with object_id, R, t (metres), visib_fract, full_pixel_count, box_full and its visible
    mask cropped at `offset`. Needs the objects' meshes.
    """
    config = SynthConfig() if config is None else config
    spec = _Spec(*_prepared_objects(object_set), camera, seed, backgrounds, config.scene,
                 config.photometric, config.procedural_probability, config.lighting,
                 config.shadows)
    maker = ImageMaker(spec)
    try:
        return [maker.make(index)[1:] for index in range(count)]
    finally:
        maker.close()


@dataclass
class _Spec:
    """What a worker needs to draw image i (picklable: sent to spawned processes once).

    The meshes travel as arrays (MeshData) with the objects, so workers do not parse mesh
    files again (seconds for LINEMOD's ASCII PLY files).
    """

    objects: ObjectSet            # without their loaded trimesh meshes
    meshes: list                  # MeshData per object, in class order
    silhouettes: list             # silhouette points per object (scenes.silhouette_points)
    camera: CameraModel
    seed: int
    backgrounds: str | None
    scene: SceneConfig
    photometric: Photometric
    procedural_probability: float
    lighting: LightingConfig
    shadows: Shadows


def _prepared_objects(object_set):
    """(objects without meshes, MeshData list, silhouette points list) of a loaded set."""
    meshes = [MeshData.from_trimesh(obj.load_mesh()) for obj in object_set]
    silhouettes = [silhouette_points(obj) for obj in object_set]
    light = ObjectSet([replace(obj, _mesh=None) for obj in object_set])
    return light, meshes, silhouettes


class ImageMaker:
    """Draws, renders, composites and augments image i of a run (one per process)."""

    def __init__(self, spec):
        self.spec = spec
        self.objects = spec.objects
        camera = spec.camera
        self.renderer = Renderer(camera.width, camera.height)
        for obj, mesh, points in zip(self.objects, spec.meshes, spec.silhouettes):
            self.renderer.add_mesh(obj.class_id, mesh)
            set_silhouette_points(obj, points)
        self.backgrounds = Backgrounds(spec.backgrounds, spec.procedural_probability)

    def make(self, index):
        """(index, image (H, W, 3) uint8 RGB, packed labels) of image `index`."""
        spec, camera = self.spec, self.spec.camera
        rng = np.random.default_rng([spec.seed, index])
        scene = sample_scene(rng, self.objects, camera, spec.scene, spec.lighting)
        rgb, _depth, ids, labels = render_scene(self.renderer, scene, camera)
        background = self.backgrounds.sample(rng, camera.width, camera.height)
        if spec.lighting.background_tint:
            background = apply_gains(background, spec.lighting.tint_gains(scene.lighting))
        background = spec.shadows.apply(background, ids, scene.lighting.unit_direction(), rng)
        image = spec.photometric.apply(composite(rgb, ids >= 0, background, rng), rng)
        return index, image, [_pack_label(label) for label in labels]

    def close(self):
        """Free the renderer's OpenGL context."""
        self.renderer.close()


def run_workers(spec, start, stop, workers, consume):
    """Make images start..stop-1 with `workers` processes; `consume` gets them in order."""
    if workers <= 1:  # in this process: no start-up cost, same images
        maker = ImageMaker(spec)
        try:
            for index in range(start, stop):
                consume(maker.make(index))
        finally:
            maker.close()
        return
    context = multiprocessing.get_context('spawn')
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                   initargs=(spec,))
    pending = deque()
    next_index = start
    window = 3 * workers  # bounded read-ahead: finished images wait in order, memory stays flat
    try:
        while pending or next_index < stop:
            while next_index < stop and len(pending) < window:
                pending.append(executor.submit(_make_in_worker, next_index))
                next_index += 1
            consume(pending.popleft().result())
    finally:
        for future in pending:
            future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


_WORKER = {}


def _init_worker(spec):
    # Ctrl-C goes to the whole process group: the main process alone handles it, so workers
    # do not print tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One OpenCV thread per worker: the workers already use every core.

    cv2.setNumThreads(1)
    try:
        _WORKER['maker'] = ImageMaker(spec)
    except Exception as exc:  # noqa: BLE001 - reported by the first task, with its message
        _WORKER['error'] = exc


def _make_in_worker(index):
    if 'error' in _WORKER:
        raise _WORKER['error']
    return _WORKER['maker'].make(index)


# --- samples ----------------------------------------------------------------------------------


def _pack_label(label):
    """A label with its mask cropped to the visible box: far less to send between processes."""
    x0, y0, x1, y1 = (int(v) for v in label.box_visib)
    return {'object_id': label.object_id, 'R': label.R, 't': label.t,
            'visib_fract': label.visib_fract, 'full_pixel_count': label.full_pixel_count,
            'box_full': label.box_full, 'offset': (x0, y0),
            'mask': np.ascontiguousarray(label.mask[y0:y1 + 1, x0:x1 + 1])}


def _write_sample(writer, camera, sample):
    _index, image, labels = sample
    annotations, masks = [], []
    for label in labels:
        annotations.append(Annotation(label['object_id'], label['R'], label['t'],
                                      label['visib_fract'], box_full=label['box_full']))
        mask = np.zeros((camera.height, camera.width), bool)
        x0, y0 = label['offset']
        crop = label['mask']
        mask[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        masks.append(mask)
    writer.add(image, camera, annotations, masks,
               full_pixel_counts=[label['full_pixel_count'] for label in labels],
               full_boxes=[label['box_full'] for label in labels])


# --- output folder ----------------------------------------------------------------------------


def write_models(object_set, folder):
    """Copy the meshes as BOP models/obj_XXXXXX.ply (mm) and write models/objects.yaml.

    A PLY mesh already in millimetres (scale 0.001) is copied byte for byte; any other mesh
    is written as binary PLY scaled to millimetres, with vertex colours (a texture is baked
    into vertex colours: the copy is for metrics and inspection; the images used the
    original texture). Existing files are kept (a resumed run wrote them).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for obj in object_set:
        target = folder / f'obj_{obj.object_id:06d}.ply'
        if not target.is_file():
            tmp = target.with_name(target.name + '.tmp')
            if obj.mesh_path.suffix.lower() == '.ply' and abs(obj.scale - 1e-3) < 1e-12:
                shutil.copyfile(obj.mesh_path, tmp)
            else:
                mesh = obj.load_mesh().copy()
                if getattr(mesh.visual, 'kind', None) == 'texture':
                    mesh.visual = mesh.visual.to_color()
                mesh.apply_scale(1000.0)
                tmp.write_bytes(mesh.export(file_type='ply'))
            os.replace(tmp, target)
        copies.append(replace(obj, mesh_path=target, scale=1e-3, _mesh=None))
    ObjectSet(copies).to_yaml(folder / 'objects.yaml')


def _settings(objects, object_set, camera, seed, backgrounds, photos, image_format, config):
    """What must match for a rerun to continue a run (not the image count or workers)."""
    geometry = [[obj.object_id, round(obj.diameter, 9), np.round(obj.keypoints, 9).tolist()]
                for obj in object_set]
    digest = hashlib.sha256(json.dumps(geometry).encode()).hexdigest()[:16]
    return _plain({
        'format_version': _FORMAT_VERSION,
        'objects': str(Path(objects).resolve()),
        'object_ids': [obj.object_id for obj in object_set],
        'objects_geometry': digest,
        'camera': camera.to_dict(),
        'seed': seed,
        'backgrounds': None if backgrounds is None else str(Path(backgrounds).resolve()),
        'background_images': 0 if photos is None else len(photos),
        'image_format': image_format,
        'config': config.to_dict(),
    })


def _prepare_output(out, settings, force):
    """Check or create the output folder; True when a previous run is to be continued."""
    if out.exists() and not out.is_dir():
        raise Pose6dError(f'output path {out} exists and is not a folder; expected a new or '
                          'empty folder (or a previous synth output to continue)')
    settings_path = out / SETTINGS_FILE
    non_empty = out.is_dir() and any(out.iterdir())
    if non_empty and force:
        for name in (SPLIT, 'models'):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for name in (SETTINGS_FILE, SUMMARY_FILE):
            (out / name).unlink(missing_ok=True)
        non_empty = False
    resume = False
    if non_empty:
        previous = _read_settings(settings_path)
        if previous is None:
            raise Pose6dError(
                f'output folder {out} is not empty and is not a pose6d synth output (no '
                f'{SETTINGS_FILE}); choose a new or empty folder with --out, or pass --force '
                f'to write into it anyway (deletes {SPLIT}/, models/, {SETTINGS_FILE} and '
                f'{SUMMARY_FILE} there)')
        changed = [key for key in settings if previous.get(key) != settings[key]]
        if changed:
            raise Pose6dError(
                f'output folder {out} holds a pose6d synth run with other settings '
                f'({", ".join(changed)} differ); rerun with the same settings to continue '
                'it, choose another --out, or pass --force to delete it and start over')
        resume = True
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        _write_json(settings_path, settings)
    return resume


def _read_settings(path):
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError) as exc:
        raise Pose6dError(f'cannot read {path} to continue the run: {exc}; pass --force to '
                          'start over') from None


def _summary(out, settings, requested, written, workers, elapsed, timing, started):
    """Totals over the whole folder (resumed images included) and this run's speed."""
    info_path = out / SPLIT / f'{SCENE_ID:06d}' / 'scene_gt_info.json'
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    fractions = [entry['visib_fract'] for entries in info.values() for entry in entries]
    steady = None
    if written > 1 and timing['last'] > timing['first']:
        steady = (written - 1) / (timing['last'] - timing['first'])
    return {
        'images': len(info),
        'images_requested': requested,
        'images_this_run': written,
        'instances': len(fractions),
        'instances_per_image': round(len(fractions) / max(1, len(info)), 3),
        # negative scenes (scene.negative_share), and scenes whose objects were all too hidden
        'images_without_objects': sum(1 for entries in info.values() if not entries),
        'mean_visib_fract': round(float(np.mean(fractions)), 4) if fractions else None,
        'seconds': round(elapsed, 3),
        'startup_seconds': (round(timing['first'] - started, 3)
                            if timing['first'] is not None else None),
        'images_per_second': round(written / elapsed, 3) if elapsed > 0 else None,
        'steady_images_per_second': None if steady is None else round(steady, 3),
        'workers': workers,
        'seed': settings['seed'],
        'settings': settings,
    }


def format_summary(summary, out):
    """A short human-readable summary of a run."""
    visibility = summary['mean_visib_fract']
    lines = [
        f'wrote {summary["images_this_run"]} images ({summary["images"]} in total) to {out}',
        f'  {summary["instances"]} labelled instances ({summary["instances_per_image"]} per '
        f'image), mean visible fraction '
        f'{"n/a" if visibility is None else f"{visibility:.2f}"}; '
        f'{summary["images_without_objects"]} images without ground truth',
        f'  {summary["seconds"]:.1f} s, {summary["images_per_second"] or 0:.1f} images/s with '
        f'{summary["workers"]} worker(s), seed {summary["seed"]}',
    ]
    return '\n'.join(lines)


def _progress_bar(total, initial, enabled):
    # disable=None: a bar on a terminal, nothing in logs and pipes.
    return tqdm(total=total, initial=initial, unit='img', desc='synth', dynamic_ncols=True,
                disable=None if enabled else True)


def _plain(value):
    """JSON-compatible plain values (tuples -> lists), as they read back from the file."""
    return json.loads(json.dumps(value))


def _write_json(path, data):
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(data, indent=2) + '\n')
    os.replace(tmp, path)


# --- benchmark --------------------------------------------------------------------------------


def bench_synth(images=200, workers=None, width=640, height=480, seed=0, image_format='jpg',
                config=None, baseline=None):
    """Images per second of `synthesize` with two objects and photo backgrounds, no files needed.

    Makes two vertex-coloured meshes (a box and a cylinder, ~12k and ~16k faces, about the
    size of LINEMOD's) and a few photo-like backgrounds in a temporary folder, then times a
    whole run: rendering, compositing, augmentation and writing, with all the workers.
    config: the SynthConfig to time (default: the defaults; its scene.object_ids is ignored).
    baseline: another SynthConfig timed in the same run, before `config`, on the same
    objects and backgrounds; the report then holds its speed and the ratio of the two.
    """
    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix='pose6d_bench_synth_') as tmp:
        tmp = Path(tmp)
        objects_file, faces = _bench_objects(tmp)
        backgrounds = _bench_backgrounds(tmp / 'backgrounds', seed)

        def run(name, chosen):
            chosen = SynthConfig() if chosen is None else chosen
            chosen = replace(chosen, scene=replace(chosen.scene, object_ids=None))
            return synthesize(objects_file, tmp / name, images, backgrounds=backgrounds,
                              camera=synth_camera(width, height), seed=seed, workers=workers,
                              config=chosen, image_format=image_format, progress=False,
                              log=lambda *_: None)

        reference = run('baseline', baseline) if baseline is not None else None
        summary = run('out', config)
    report = {
        'benchmark': 'synth',
        'width': width, 'height': height, 'images': images, 'workers': workers,
        'images_per_second': summary['images_per_second'],
        'steady_images_per_second': summary['steady_images_per_second'],
        'startup_seconds': summary['startup_seconds'],
        'seconds': summary['seconds'],
        'objects': 2, 'faces_per_object': faces,
        'instances_per_image': summary['instances_per_image'],
        'image_format': summary['settings']['image_format'],
        'backgrounds': 'photo-like images and procedural',
        'target_images_per_second': 20,
        'machine': machine_info(),
    }
    if reference is not None:
        report['baseline'] = {key: reference[key] for key in (
            'images_per_second', 'steady_images_per_second', 'startup_seconds', 'seconds',
            'instances_per_image')}
        # Whole-run speeds (start-up included) of the same number of images: > 1 is faster.
        report['speed_ratio_to_baseline'] = round(
            summary['images_per_second'] / reference['images_per_second'], 3)
    return report


def _bench_objects(folder):
    """Two vertex-coloured meshes (metres) and an objects YAML naming them."""
    box = trimesh.creation.box([0.10, 0.07, 0.05])
    for _ in range(5):  # 12 -> 12,288 faces, about a LINEMOD mesh
        box = box.subdivide()
    cylinder = trimesh.creation.cylinder(radius=0.035, height=0.12, sections=64)
    for _ in range(3):
        cylinder = cylinder.subdivide()
    entries, faces = [], []
    for index, mesh in enumerate((box, cylinder)):
        span = np.ptp(mesh.vertices, axis=0)
        colours = (mesh.vertices - mesh.vertices.min(axis=0)) / span
        mesh.visual.vertex_colors = np.concatenate(
            [colours * 200 + 40, np.full((len(colours), 1), 255)], axis=1).astype(np.uint8)
        name = f'mesh_{index + 1}.ply'
        mesh.export(folder / name)
        entries.append({'name': ('box', 'cylinder')[index], 'id': index + 1, 'mesh': name})
        faces.append(len(mesh.faces))
    path = folder / 'objects.yaml'
    path.write_text(yaml.safe_dump({'objects': entries}, sort_keys=False))
    return path, faces


def _bench_backgrounds(folder, seed, count=6):
    """A few photo-like JPEGs (1024x768): procedural scenes, blurred, with noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = cv2.GaussianBlur(procedural_background(rng, 1024, 768), (0, 0), 1.5)
        noise = rng.normal(0.0, 4.0, image.shape)
        image = np.clip(image + noise, 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f'photo_{index}.jpg'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder
