"""BOP-format datasets: one reader for real BOP datasets (LM, LM-O, ...) and ours, and a writer.

Layout (https://github.com/thodan/bop_toolkit/blob/master/docs/bop_datasets_format.md)::

    <root>/models/models_info.json        per object: diameter, min_*, size_*, symmetries (mm)
    <root>/models/obj_XXXXXX.ply          meshes (mm)
    <root>/camera.json                    optional: default intrinsics and image size
    <root>/<split>/<scene_id:06d>/
        rgb/<im_id:06d>.png|.jpg          (gray/ for grayscale datasets)
        mask/<im_id:06d>_<gt_idx:06d>.png         full silhouette (written when given)
        mask_visib/<im_id:06d>_<gt_idx:06d>.png   visible part
        scene_gt.json        {im_id: [{cam_R_m2c: 9 (row-major), cam_t_m2c: 3 (mm), obj_id}]}
        scene_camera.json    {im_id: {cam_K: 9 (row-major), depth_scale, ...}}
        scene_gt_info.json   {im_id: [{bbox_obj, bbox_visib, px_count_all, px_count_valid,
                                       px_count_visib, visib_fract}]}

Units: files hold millimetres, Python objects metres (converted here, once). Poses are
T_cam_obj (model -> camera). Boxes in files are BOP's integer [x, y, w, h] with
w = x_max - x_min of the pixel indices (bop_toolkit `calc_2d_bbox`) and [-1, -1, -1, -1] for an
invisible object; in Python they are float arrays (x_min, y_min, x_max, y_max) in pixels with the
origin at the centre of the top-left pixel, so the box of a mask spans its pixel centres, and
NaN where BOP writes -1.

Our writer adds "width" and "height" (and "D" for a distorted camera) to the scene_camera.json
entries; BOP tools ignore extra keys. Real BOP entries have no size: it comes from
<root>/camera.json or, failing that, from the first image of each scene.
"""

from __future__ import annotations

from dataclasses import dataclass
import json
import math
import os
from pathlib import Path
import shutil

import cv2
import numpy as np

from pose6d_ros.core.config_fields import load_yaml
from pose6d_ros.core.errors import CameraError, DatasetError
from pose6d_ros.core.files import write_atomic
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.geometry.objects import ObjectSet
from pose6d_ros.core.geometry.poses import box_2d

MM = 1e-3  # millimetres -> metres
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.tif', '.tiff')
IMAGE_FOLDERS = ('rgb', 'gray')
SCENE_FILES = ('scene_gt.json', 'scene_camera.json', 'scene_gt_info.json')
_TMP_SUFFIX = '.tmp'  # how core/files.py write_atomic's temporary names end
_NO_BOX = [-1, -1, -1, -1]


# --- samples ----------------------------------------------------------------------------------


@dataclass
class Annotation:
    """One object instance in an image: its pose T_cam_obj (metres) and 2D boxes.

    Boxes are float arrays (x_min, y_min, x_max, y_max) in pixels, origin at the centre of the
    top-left pixel. `box` bounds the visible part (BOP bbox_visib); without a
    scene_gt_info.json it is the projection of the model's 3D box clipped to the image, and it
    is NaN for an invisible object or when neither gt_info nor models_info.json is there.
    `box_full` bounds the whole silhouette, occluded part included (BOP bbox_obj), None when
    unknown. `visib_fract` is the visible fraction of the silhouette, 1.0 when unknown.

    The writer reads object_id, R, t (and box_full / visib_fract when set) from it.
    """

    object_id: int
    R: np.ndarray                      # (3, 3) rotation of T_cam_obj
    t: np.ndarray                      # (3,) translation of T_cam_obj, metres
    visib_fract: float = 1.0
    box: np.ndarray | None = None      # (4,) x_min, y_min, x_max, y_max of the visible part
    box_full: np.ndarray | None = None  # (4,) same for the whole silhouette (bbox_obj)
    mask_path: Path | None = None      # mask_visib PNG

    def __post_init__(self):
        self.object_id = int(self.object_id)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        if self.box_full is not None:
            self.box_full = np.asarray(self.box_full, dtype=np.float64).reshape(4)


@dataclass
class Sample:
    """One image of a BOP scene with its camera and annotations (metres, pixels)."""

    scene_id: int
    image_id: int
    image_path: Path
    camera: CameraModel
    annotations: list[Annotation]
    depth_scale: float | None = None   # scene_camera.json depth_scale (depth PNG units -> mm)

    def load_image(self):
        """The image as RGB uint8 (H, W, 3); grayscale images are expanded to 3 channels."""
        image = _read_image(self.image_path, cv2.IMREAD_COLOR)
        self._check_size(image, self.image_path)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def load_mask(self, index):
        """The visible mask (BOP mask_visib) of annotation `index` as bool (H, W)."""
        annotation = self.annotations[index]
        if annotation.mask_path is None:
            raise DatasetError(
                f'scene {self.scene_id}, image {self.image_id}, annotation {index} '
                f'(object {annotation.object_id}) has no visible mask; expected a PNG in '
                f'{self.image_path.parent.parent / "mask_visib"}')
        mask = _read_image(annotation.mask_path, cv2.IMREAD_GRAYSCALE)
        self._check_size(mask, annotation.mask_path)
        return mask > 0

    def _check_size(self, image, path):
        if image.shape[:2] != (self.camera.height, self.camera.width):
            raise DatasetError(f'{path} is {image.shape[1]}x{image.shape[0]} pixels; its camera '
                               f'(scene_camera.json) is {self.camera.width}x{self.camera.height}')


# --- reader -----------------------------------------------------------------------------------


@dataclass
class _Scene:
    scene_id: int
    folder: Path
    gt: dict            # image id -> list of scene_gt entries
    camera: dict        # image id -> scene_camera entry
    info: dict | None   # image id -> list of scene_gt_info entries
    images: dict        # image id -> image path
    masks: frozenset    # file names in mask_visib/
    size: tuple | None = None  # default (width, height) of the scene's images


def object_names(models_dir):
    """{object id: name} from models_dir/objects.yaml (written by synth); {} without one."""
    path = Path(models_dir) / 'objects.yaml'
    if not path.is_file():
        return {}
    data = load_yaml(path, 'object set', DatasetError)
    entries = data.get('objects') if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise DatasetError(f'{path}: expected a mapping with an "objects" list')
    names = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get('id'), int) and entry.get('name'):
            names[entry['id']] = str(entry['name'])
    return names


class BopDataset:
    """Reader of a BOP split (real BOP datasets and those written by `BopWriter`).

    root: the dataset folder (holding models/ and split folders), a split folder, or a scene
    folder. split: name of the split folder (train, train_pbr, test, ...); auto-detected when
    the dataset has exactly one. object_ids: keep only annotations of these object ids.
    min_visib_fract: keep only annotations at least this visible. Images that had annotations
    and lost them all to these filters are left out; images without any annotation are kept.

    `object_set` is the ObjectSet of <root>/models/models_info.json, None without one; when
    present every object id in scene_gt.json must be in it. Its objects are named as in
    models/objects.yaml when the dataset has one (`pose6d synth` writes it), else obj_XXXXXX.
    The json files are read and checked here; images and masks are read on demand by
    `Sample.load_image` / `Sample.load_mask`.
    """

    def __init__(self, root, split=None, object_ids=None, min_visib_fract=0.0):
        self.split_dir, only_scene = _locate_split(Path(root), split)
        self.split = self.split_dir.name
        self.dataset_dir = self.split_dir.parent
        self.min_visib_fract = float(min_visib_fract)
        models_info = self.dataset_dir / 'models' / 'models_info.json'
        self.object_set = None
        if models_info.is_file():
            self.object_set = ObjectSet.from_models_info(
                models_info, names=object_names(self.dataset_dir / 'models'))
        self._known_ids = None
        if self.object_set is not None:
            self._known_ids = {obj.object_id for obj in self.object_set}
        self.object_ids = None if object_ids is None else {int(i) for i in object_ids}
        if self.object_ids is not None and self._known_ids is not None:
            unknown = sorted(self.object_ids - self._known_ids)
            if unknown:
                raise DatasetError(f'object_ids {_join(unknown)} are not in {models_info}; '
                                   f'it has ids {_join(sorted(self._known_ids))}')
        self._default_size = _dataset_image_size(self.dataset_dir / 'camera.json')
        self._cameras = {}
        self._scenes = {}
        self._index = []  # (scene id, image id, kept gt indices, camera)
        for scene_id, folder in _scene_folders(self.split_dir):
            if only_scene is not None and folder != only_scene:
                continue
            scene = _load_scene(scene_id, folder)
            self._scenes[scene_id] = scene
            self._index_scene(scene)

    def __len__(self):
        return len(self._index)

    def __iter__(self):
        for i in range(len(self._index)):
            yield self[i]

    def __getitem__(self, i):
        scene_id, image_id, kept, camera = self._index[i]
        scene = self._scenes[scene_id]
        entries = scene.gt[image_id]
        infos = scene.info[image_id] if scene.info is not None else None
        annotations = [self._annotation(scene, image_id, gt_index, entries[gt_index],
                                        None if infos is None else infos[gt_index], camera)
                       for gt_index in kept]
        depth_scale = scene.camera[image_id].get('depth_scale')
        return Sample(scene_id, image_id, scene.images[image_id], camera, annotations,
                      None if depth_scale is None else float(depth_scale))

    def __repr__(self):
        return (f'BopDataset({str(self.split_dir)!r}, {len(self)} images, '
                f'{len(self._scenes)} scenes)')

    @property
    def scenes(self):
        """Scene ids of the split (those with a scene_gt.json), sorted."""
        return sorted(self._scenes)

    # --- indexing -----------------------------------------------------------------------------

    def _index_scene(self, scene):
        gt_file = scene.folder / 'scene_gt.json'
        info_file = scene.folder / 'scene_gt_info.json'
        for image_id in sorted(scene.gt):
            entries = scene.gt[image_id]
            if not isinstance(entries, list):
                raise DatasetError(f'{gt_file}, image {image_id}: expected a list of '
                                   f'{{"cam_R_m2c", "cam_t_m2c", "obj_id"}}; got '
                                   f'{type(entries).__name__}')
            if image_id not in scene.images:
                raise DatasetError(
                    f'image file missing: scene {scene.scene_id}, image {image_id} is annotated '
                    f'in {gt_file} but there is no {scene.folder / "rgb" / f"{image_id:06d}"}'
                    '.png or .jpg')
            camera = self._camera(scene, image_id)
            infos = None
            if scene.info is not None:
                infos = scene.info.get(image_id)
                if not isinstance(infos, list) or len(infos) != len(entries):
                    count = len(infos) if isinstance(infos, list) else 'no'
                    raise DatasetError(
                        f'{info_file} has {count} entries for image {image_id}; {gt_file} has '
                        f'{len(entries)} (expected one per annotated object)')
            kept = []
            for gt_index, entry in enumerate(entries):
                object_id = _checked_gt_entry(entry, gt_file, image_id, gt_index)
                if self._known_ids is not None and object_id not in self._known_ids:
                    raise DatasetError(
                        f'unknown object id {object_id} in {gt_file}, image {image_id}; the '
                        f"dataset's models_info.json has ids {_join(sorted(self._known_ids))}")
                if self.object_ids is not None and object_id not in self.object_ids:
                    continue
                visib_fract = 1.0
                if infos is not None:
                    visib_fract = _number(infos[gt_index], 'visib_fract', info_file, image_id,
                                          gt_index, default=1.0)
                if visib_fract < self.min_visib_fract:
                    continue
                kept.append(gt_index)
            if entries and not kept:
                continue
            self._index.append((scene.scene_id, image_id, tuple(kept), camera))

    def _camera(self, scene, image_id):
        camera_file = scene.folder / 'scene_camera.json'
        entry = scene.camera.get(image_id)
        if entry is None:
            raise DatasetError(
                f'scene_camera entry missing: {camera_file} has no entry for image {image_id} '
                f'(annotated in scene_gt.json); expected "{image_id}": {{"cam_K": [9 numbers], '
                '...}')
        if not isinstance(entry, dict) or 'cam_K' not in entry:
            raise DatasetError(f'{camera_file}, image {image_id}: expected a mapping with '
                               '"cam_K" (9 numbers, row-major 3x3)')
        if 'width' in entry and 'height' in entry:
            size = (entry['width'], entry['height'])
        else:
            size = self._scene_size(scene)
        try:
            key = (tuple(np.ravel(entry['cam_K']).tolist()),
                   tuple(np.ravel(entry.get('D') or []).tolist()), tuple(size))
        except (TypeError, ValueError):
            key = None
        camera = self._cameras.get(key)
        if camera is None:
            try:
                camera = CameraModel(entry['cam_K'], entry.get('D'), *size)
            except (CameraError, TypeError, ValueError) as exc:
                raise DatasetError(f'{camera_file}, image {image_id}: {exc}') from None
            if key is not None:
                self._cameras[key] = camera
        return camera

    def _scene_size(self, scene):
        if scene.size is None:
            scene.size = self._default_size
        if scene.size is None:  # real BOP: read the size from the scene's first image
            path = scene.images[min(scene.images)]
            scene.size = _read_image(path, cv2.IMREAD_UNCHANGED).shape[1::-1]
        return scene.size

    def _annotation(self, scene, image_id, gt_index, entry, info, camera):
        gt_file = scene.folder / 'scene_gt.json'
        where = (gt_file, image_id, gt_index)
        R = _numbers(entry['cam_R_m2c'], 9, 'cam_R_m2c', *where).reshape(3, 3)
        t = _numbers(entry['cam_t_m2c'], 3, 'cam_t_m2c', *where) * MM
        object_id = int(entry['obj_id'])
        mask_name = f'{image_id:06d}_{gt_index:06d}.png'
        mask_path = scene.folder / 'mask_visib' / mask_name if mask_name in scene.masks else None
        if info is not None:
            info_where = (scene.folder / 'scene_gt_info.json', image_id, gt_index)
            visib_fract = _number(info, 'visib_fract', *info_where, default=1.0)
            box = _box_from_xywh(info.get('bbox_visib'), 'bbox_visib', *info_where)
            box_full = None
            if info.get('bbox_obj') is not None:
                box_full = _box_from_xywh(info['bbox_obj'], 'bbox_obj', *info_where)
            return Annotation(object_id, R, t, visib_fract, box, box_full, mask_path)
        box = np.full(4, np.nan)
        if self.object_set is not None:
            corners = self.object_set.by_id(object_id).keypoints[:8]
            pixels = camera.project(corners @ R.T + t)
            if np.isfinite(pixels).all():
                box = box_2d(pixels)
                box[[0, 2]] = np.clip(box[[0, 2]], 0, camera.width - 1)
                box[[1, 3]] = np.clip(box[[1, 3]], 0, camera.height - 1)
        return Annotation(object_id, R, t, 1.0, box, None, mask_path)


def _locate_split(root, split):
    """(split folder, scene folder or None) for a dataset, split or scene folder."""
    if not root.exists():
        raise DatasetError(f'dataset folder not found: {root}')
    if not root.is_dir():
        raise DatasetError(f'dataset path {root} is not a folder; expected a BOP dataset folder '
                           '(with models/ and split folders) or a split folder')
    candidates = [d for d in _subfolders(root) if _scene_folders(d)]
    if split is not None:
        split_dir = root / split
        if not _scene_folders(split_dir):
            what = 'not found' if not split_dir.is_dir() else 'has no scene with scene_gt.json'
            names = ', '.join(d.name for d in candidates) or 'none'
            raise DatasetError(f'split {split!r} {what} in {root}; splits there: {names}')
        return split_dir, None
    if (root / 'scene_gt.json').is_file() and root.name.isdigit():
        return root.parent, root
    if _scene_folders(root):
        return root, None
    if len(candidates) == 1:
        return candidates[0], None
    if candidates:
        raise DatasetError(f'{root} holds several splits ({", ".join(d.name for d in candidates)})'
                           '; choose one with split=')
    raise DatasetError(
        f'no scene_gt.json anywhere in {root}; expected <dataset>/<split>/<scene_id>/'
        'scene_gt.json (e.g. test/000002/scene_gt.json) with the dataset or split folder as root')


def _subfolders(folder):
    try:
        return sorted(d for d in folder.iterdir() if d.is_dir())
    except OSError:
        return []


def _scene_folders(split_dir):
    """[(scene id, folder)] of the digit-named folders holding a scene_gt.json, sorted."""
    return [(int(d.name), d) for d in _subfolders(split_dir)
            if d.name.isdigit() and (d / 'scene_gt.json').is_file()]


def _load_scene(scene_id, folder):
    gt = _read_json_by_image(folder / 'scene_gt.json')
    camera = _read_json_by_image(folder / 'scene_camera.json', required=True)
    info = None
    if (folder / 'scene_gt_info.json').is_file():
        info = _read_json_by_image(folder / 'scene_gt_info.json')
    images = {}
    for name in IMAGE_FOLDERS:
        images = _image_files(folder / name)
        if images:
            break
    try:
        masks = frozenset(os.listdir(folder / 'mask_visib'))
    except OSError:
        masks = frozenset()
    return _Scene(scene_id, folder, gt, camera, info, images, masks)


def _image_files(folder):
    """{image id: path} of the images (PNG, JPEG, TIFF) in a folder."""
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    images = {}
    for name in sorted(names):
        stem, suffix = os.path.splitext(name)
        if stem.isdigit() and suffix.lower() in IMAGE_SUFFIXES:
            images.setdefault(int(stem), folder / name)
    return images


def _read_json_by_image(path, required=False):
    """A scene json file as {image id (int): value}."""
    if not path.is_file():
        if required:
            raise DatasetError(f'{path} not found; every scene folder with a scene_gt.json needs '
                               'a scene_camera.json (per-image cam_K)')
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f'cannot parse {path}: {exc}') from None
    if not isinstance(data, dict):
        raise DatasetError(f'{path}: expected a mapping of image id -> entry; got '
                           f'{type(data).__name__}')
    by_image = {}
    for key, value in data.items():
        if not str(key).isdigit():
            raise DatasetError(f'{path}: key {key!r} is not an image id; expected integer keys')
        by_image[int(key)] = value
    return by_image


def _dataset_image_size(path):
    """(width, height) from a BOP dataset camera.json, None without one."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return int(data['width']), int(data['height'])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f'cannot read width and height from {path}: {exc}') from None


def _checked_gt_entry(entry, gt_file, image_id, gt_index):
    """The object id of a scene_gt entry after a cheap check of its keys."""
    where = f'{gt_file}, image {image_id}, annotation {gt_index}'
    if not isinstance(entry, dict):
        raise DatasetError(f'{where}: expected a mapping with "cam_R_m2c", "cam_t_m2c", '
                           f'"obj_id"; got {type(entry).__name__}')
    missing = [k for k in ('cam_R_m2c', 'cam_t_m2c', 'obj_id') if k not in entry]
    if missing:
        raise DatasetError(f'{where}: missing {", ".join(missing)}')
    object_id = entry['obj_id']
    if isinstance(object_id, bool) or not isinstance(object_id, int):
        raise DatasetError(f'{where}: obj_id must be an integer; got {object_id!r}')
    return object_id


def _numbers(values, size, key, path, image_id, gt_index):
    try:
        array = np.array(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        array = None
    if array is None or array.size != size or not np.isfinite(array).all():
        raise DatasetError(f'{path}, image {image_id}, annotation {gt_index}: {key} must be '
                           f'{size} finite numbers; got {values!r}')
    return array


def _number(entry, key, path, image_id, gt_index, default):
    value = entry.get(key, default) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise DatasetError(f'{path}, image {image_id}, annotation {gt_index}: {key} must be a '
                           f'number; got {value!r}')
    return float(value)


def _box_from_xywh(values, key, path, image_id, gt_index):
    """BOP [x, y, w, h] -> float (x_min, y_min, x_max, y_max); NaN for BOP's [-1, -1, -1, -1]."""
    box = _numbers(values, 4, key, path, image_id, gt_index)
    if box[2] < 0 or box[3] < 0:
        return np.full(4, np.nan)
    return np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])


def _read_image(path, flags):
    """Decode an image file with OpenCV; a DatasetError naming the file when that fails."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise DatasetError(f'cannot read image {path}: {exc}') from None
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise DatasetError(f'cannot read image {path}: the file is empty, truncated or not an '
                           'image (expected PNG or JPEG)')
    return image


def _join(values):
    return ', '.join(str(v) for v in values)


# --- writer -----------------------------------------------------------------------------------


class BopWriter:
    """Writes one BOP scene folder <root>/<split>/<scene_id:06d>/ of synthetic images.

    Usage::

        with BopWriter(root, 'train_pbr', scene_id=0, objects=object_set) as writer:
            for ...:
                writer.add(image_rgb, camera, annotations, visible_masks, full_pixel_counts)

    One writer per scene folder, in one process: workers render (image, annotations, masks)
    and the main process writes them. Crash safety: every image and mask is written to a
    temporary name and renamed, and an interrupt or error inside `add` removes the files of
    that image again; the json files hold only images already on disk and are rewritten
    atomically (temporary file, fsync, os.replace) every `flush_every` images and at
    `close`, so a run stopped by Ctrl-C (then closed) leaves no image without its ground
    truth. `resume=True` reopens an existing scene folder: images the json files do not
    list (written after the last flush) and temporary files are deleted, and numbering
    continues after the last listed image; `dropped_image_ids` lists what was deleted.

    objects: an ObjectSet written to <root>/models/models_info.json (mm, with symmetries);
    object ids in `add` must then be in it. force: delete a non-empty scene folder first.
    image_ext: 'png' (lossless, `png_compression` 0-9, default 1 for speed) or 'jpg'.
    """

    def __init__(self, root, split='train', scene_id=0, image_ext='png', objects=None,
                 force=False, resume=False, flush_every=100, png_compression=1,
                 jpeg_quality=95):
        self.root = Path(root)
        self.image_ext = str(image_ext).lower().lstrip('.')
        if self.image_ext == 'jpeg':
            self.image_ext = 'jpg'
        if self.image_ext not in ('png', 'jpg'):
            raise DatasetError(f"image_ext must be 'png' or 'jpg'; got {image_ext!r}")
        if force and resume:
            raise DatasetError('BopWriter: pass force=True (start over) or resume=True '
                               '(continue), not both')
        if int(scene_id) < 0:
            raise DatasetError(f'scene_id must be a non-negative integer; got {scene_id!r}')
        self.split = str(split)
        self.scene_id = int(scene_id)
        self.scene_dir = self.root / self.split / f'{self.scene_id:06d}'
        self.objects = objects
        self.flush_every = max(1, int(flush_every))
        if self.image_ext == 'png':
            self._encode_params = [cv2.IMWRITE_PNG_COMPRESSION, int(png_compression)]
        else:
            self._encode_params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        self._gt, self._camera, self._info = {}, {}, {}  # image id -> json text of its entry
        self.dropped_image_ids = []
        existing = self.scene_dir.is_dir() and any(self.scene_dir.iterdir())
        if self.scene_dir.exists() and not self.scene_dir.is_dir():
            raise DatasetError(f'output path {self.scene_dir} exists and is not a folder')
        if existing and not (force or resume):
            raise DatasetError(f'output folder {self.scene_dir} is not empty; pass force=True to '
                               'overwrite it or resume=True to continue it')
        if existing and force:
            shutil.rmtree(self.scene_dir)
        for name in ('rgb', 'mask_visib'):
            (self.scene_dir / name).mkdir(parents=True, exist_ok=True)
        if existing and resume:
            self._load_existing()
        self._next_id = max(self._gt) + 1 if self._gt else 0
        self._unflushed = 0
        self._closed = False
        if objects is not None:
            self._known_ids = {obj.object_id for obj in objects}
            (self.root / 'models').mkdir(parents=True, exist_ok=True)
            write_atomic(self.root / 'models' / 'models_info.json',
                         _json_text(_models_info(objects)).encode(), sync=True)
        else:
            self._known_ids = None
        self.flush()

    def __len__(self):
        """Number of images in the scene (resumed ones included)."""
        return len(self._gt)

    @property
    def image_ids(self):
        return sorted(self._gt)

    @property
    def next_image_id(self):
        return self._next_id

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def add(self, image_rgb, camera, annotations, visible_masks, full_pixel_counts=None,
            full_boxes=None, full_masks=None):
        """Write one image and its annotations; returns its image id.

        image_rgb: uint8 (H, W, 3) RGB, undistorted for `camera` (CameraModel of size W x H).
        annotations: objects with object_id, R (3x3) and t (metres) of T_cam_obj (Annotation).
        visible_masks: one bool (H, W) mask per annotation, the visible pixels.
        Per annotation, optional: full_pixel_counts (pixels of the unoccluded silhouette, for
        visib_fract = visible / full), full_boxes (x_min, y_min, x_max, y_max of the unoccluded
        silhouette, BOP bbox_obj), full_masks (bool (H, W) unoccluded silhouettes: give both,
        and are written to mask/). Without full counts, `annotation.visib_fract` (default 1)
        is used; without full boxes, `annotation.box_full`, else the projection of the model's
        3D box (with `objects`), else the visible box.
        """
        if self._closed:
            raise RuntimeError('BopWriter.add() after close()')
        image = np.asarray(image_rgb)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'image_rgb must be uint8 (H, W, 3); got {image.dtype} '
                             f'{image.shape}')
        height, width = image.shape[:2]
        if camera.size != (width, height):
            raise ValueError(f'camera is {camera.width}x{camera.height}, image is '
                             f'{width}x{height}')
        count = len(annotations)
        for name, values in (('visible_masks', visible_masks),
                             ('full_pixel_counts', full_pixel_counts),
                             ('full_boxes', full_boxes), ('full_masks', full_masks)):
            if values is not None and len(values) != count:
                raise ValueError(f'{name} has {len(values)} items for {count} annotations')
        if visible_masks is None:
            raise ValueError('visible_masks is required (one bool (H, W) mask per annotation)')

        image_id = self._next_id
        ok, data = cv2.imencode(f'.{self.image_ext}', cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                self._encode_params)
        if not ok:
            raise RuntimeError(f'OpenCV could not encode image {image_id} as {self.image_ext}')
        # Everything is checked and encoded first; `_commit` then writes it all or nothing.
        files = [(self.scene_dir / 'rgb' / f'{image_id:06d}.{self.image_ext}', data)]

        gt_entries, info_entries = [], []
        for index, annotation in enumerate(annotations):
            object_id = int(annotation.object_id)
            if self._known_ids is not None and object_id not in self._known_ids:
                raise DatasetError(f'unknown object id {object_id} in annotation {index} of '
                                   f'image {image_id}; the object set has ids '
                                   f'{_join(sorted(self._known_ids))}')
            R = np.asarray(annotation.R, dtype=np.float64).reshape(3, 3)
            t = np.asarray(annotation.t, dtype=np.float64).reshape(3)
            if not (np.isfinite(R).all() and np.isfinite(t).all()):
                raise ValueError(f'annotation {index} of image {image_id} has a non-finite pose')
            visible = self._mask(visible_masks[index], 'visible_masks', index, (height, width))
            files.append(self._mask_file('mask_visib', image_id, index, visible))
            px_visib = int(np.count_nonzero(visible))
            bbox_visib = _mask_box_xywh(visible)

            bbox_obj = None
            if full_masks is not None:
                full = self._mask(full_masks[index], 'full_masks', index, (height, width))
                files.append(self._mask_file('mask', image_id, index, full))
                px_all = int(np.count_nonzero(full))
                bbox_obj = _mask_box_xywh(full)
            elif full_pixel_counts is not None:
                px_all = int(full_pixel_counts[index])
            else:
                fract = getattr(annotation, 'visib_fract', None)
                px_all = round(px_visib / fract) if fract else px_visib
            px_all = max(px_all, px_visib)
            if bbox_obj is None:
                box = full_boxes[index] if full_boxes is not None else None
                if box is None:
                    box = getattr(annotation, 'box_full', None)
                if box is None and self.objects is not None:
                    corners = self.objects.by_id(object_id).keypoints[:8]
                    box = box_2d(camera.project(corners @ R.T + t))
                bbox_obj = bbox_visib if box is None else _box_to_xywh(box)

            gt_entries.append({'cam_R_m2c': [round(float(v), 9) for v in R.ravel()],
                               'cam_t_m2c': [round(float(v) / MM, 6) for v in t],
                               'obj_id': object_id})
            info_entries.append({'bbox_obj': bbox_obj, 'bbox_visib': bbox_visib,
                                 'px_count_all': px_all, 'px_count_valid': px_all,
                                 'px_count_visib': px_visib,
                                 'visib_fract': round(px_visib / px_all, 6) if px_all else 0.0})

        camera_entry = {'cam_K': [round(float(v), 6) for v in camera.K.ravel()],
                        'width': width, 'height': height}
        if camera.has_distortion:
            camera_entry['D'] = [float(v) for v in camera.D]
        self._commit(image_id, files, camera_entry, info_entries, gt_entries)
        self._next_id += 1
        self._unflushed += 1
        if self._unflushed >= self.flush_every:
            self.flush()
        return image_id

    def flush(self):
        """Rewrite the three json files atomically (scene_gt.json last)."""
        for name, entries in (('scene_camera.json', self._camera),
                              ('scene_gt_info.json', self._info), ('scene_gt.json', self._gt)):
            write_atomic(self.scene_dir / name, _json_lines(entries).encode(), sync=True)
        self._unflushed = 0

    def close(self):
        """Flush the json files; later calls do nothing."""
        if not self._closed:
            self.flush()
            self._closed = True

    # --- internals ----------------------------------------------------------------------------

    @staticmethod
    def _mask(mask, name, index, shape):
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise ValueError(f'{name}[{index}] has shape {mask.shape}; expected {shape}')
        return mask.astype(bool, copy=False)

    def _mask_file(self, folder, image_id, index, mask):
        """(path, PNG bytes) of one mask of an image."""
        ok, data = cv2.imencode('.png', mask.astype(np.uint8) * 255,
                                [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise RuntimeError(f'OpenCV could not encode mask {index} of image {image_id}')
        return self.scene_dir / folder / f'{image_id:06d}_{index:06d}.png', data

    def _commit(self, image_id, files, camera_entry, info_entries, gt_entries):
        """Write an image's files, then list it for the json files; all of it or nothing.

        An interrupt (Ctrl-C) or error part-way removes what was written of this image, so
        the json files written at `close` list every image on disk: a reader of rgb/ never
        sees an image without its ground truth. (After a hard kill, images written since the
        last flush lack it until `resume` deletes them.)
        """
        written = []
        try:
            for path, data in files:
                written.append(path)
                write_atomic(path, data)
            self._camera[image_id] = _dumps(camera_entry)
            self._info[image_id] = _dumps(info_entries)
            self._gt[image_id] = _dumps(gt_entries)
        except BaseException:
            for entries in (self._camera, self._info, self._gt):
                entries.pop(image_id, None)
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def _load_existing(self):
        """Keep the images listed in all three json files; delete everything else we wrote."""
        loaded = {}
        for name in SCENE_FILES:
            path = self.scene_dir / name
            try:
                loaded[name] = _read_json_by_image(path)
            except DatasetError as exc:
                raise DatasetError(f'cannot resume {self.scene_dir}: {exc}') from None
        gt, camera, info = (loaded[name] for name in SCENE_FILES)
        images = {}
        for folder in IMAGE_FOLDERS:
            images.update(_image_files(self.scene_dir / folder))
        kept = {i for i in set(gt) & set(camera) & set(info) & set(images)
                if isinstance(gt[i], list) and isinstance(info[i], list)
                and len(gt[i]) == len(info[i])}
        self.dropped_image_ids = sorted((set(images) | set(gt)) - kept)
        for image_id in sorted(kept):
            self._gt[image_id] = _dumps(gt[image_id])
            self._camera[image_id] = _dumps(camera[image_id])
            self._info[image_id] = _dumps(info[image_id])
        for image_id, path in images.items():
            if image_id not in kept:
                path.unlink()
        for folder in (self.scene_dir, *(self.scene_dir / n for n in ('rgb', 'mask', 'mask_visib',
                                                                      'gray'))):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.endswith(_TMP_SUFFIX):
                    path.unlink()
                elif folder.name in ('mask', 'mask_visib') and path.suffix == '.png':
                    prefix = path.name.split('_')[0]
                    if prefix.isdigit() and int(prefix) not in kept:
                        path.unlink()


def _mask_box_xywh(mask):
    """BOP [x, y, w, h] of a bool mask (w = x_max - x_min); [-1, -1, -1, -1] when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return list(_NO_BOX)
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0]), int(rows[-1] - rows[0])]


def _box_to_xywh(box):
    """Float (x_min, y_min, x_max, y_max) -> BOP integer [x, y, w, h] (rounded)."""
    box = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.isfinite(box).all():
        return list(_NO_BOX)
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return [x0, y0, x1 - x0, y1 - y0]


def _models_info(objects):
    """BOP models_info.json content (mm) of an ObjectSet."""
    info = {}
    for obj in objects:
        corners = np.asarray(obj.keypoints, dtype=np.float64)[:8]
        low, size = corners.min(axis=0) / MM, np.ptp(corners, axis=0) / MM
        entry = {'diameter': round(float(obj.diameter) / MM, 6)}
        for axis, lo, extent in zip('xyz', low, size):
            entry[f'min_{axis}'] = round(float(lo), 6)
            entry[f'size_{axis}'] = round(float(extent), 6)
        discrete = []
        for S in obj.symmetries.discrete:
            S = np.array(S, dtype=np.float64).reshape(4, 4)
            S[:3, 3] /= MM
            discrete.append([round(float(v), 9) for v in S.ravel()])
        if discrete:
            entry['symmetries_discrete'] = discrete
        if obj.symmetries.continuous:
            entry['symmetries_continuous'] = [
                {'axis': [round(float(v), 9) for v in axis],
                 'offset': [round(float(v) / MM, 6) for v in offset]}
                for axis, offset in obj.symmetries.continuous]
        info[str(obj.object_id)] = entry
    return info


def _dumps(value):
    return json.dumps(value, separators=(', ', ': '))


def _json_lines(entries):
    """A {image id: json text} mapping as a json object, one image per line (as BOP)."""
    if not entries:
        return '{}\n'
    return ('{\n' + ',\n'.join(f'  "{k}": {entries[k]}' for k in sorted(entries, key=int))
            + '\n}\n')


def _json_text(mapping):
    return _json_lines({k: _dumps(v) for k, v in mapping.items()}) if mapping else '{}\n'
