"""`pose6d show`: the ground truth of a BOP-format dataset drawn on a few images, as one PNG.

Each chosen image becomes a tile of a contact sheet, with every annotated instance drawn from
its pose and the image's camera: the object's 3D box, its axes, its 9 keypoints (numbered in
the order of core/geometry/poses.py), the outline of its visible mask (mask_visib) and its
name. A wrong unit, a transposed rotation or a swapped corner order shows at a glance.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.errors import DatasetError, Pose6dError
from pose6d_ros.core.files import write_atomic
from pose6d_ros.core.geometry.draw import (
    COLORS_RGB,
    draw_axes,
    draw_box,
    draw_keypoints,
    draw_label,
    draw_outline,
    label_anchor,
)
from pose6d_ros.core.geometry.objects import ObjectSet
from pose6d_ros.core.geometry.poses import Pose

DEFAULT_IMAGES = 12
TILE_WIDTH = 320      # pixels: every image is scaled to this width, up or down
CAPTION_HEIGHT = 18   # pixels under each tile for its image id
COLUMNS = 4           # tiles per row, at most
GAP = 2               # pixels between tiles
BACKGROUND_RGB = (32, 32, 32)
NO_MODEL_AXIS_LENGTH = 0.05  # metres: axes drawn when the dataset has no models_info.json


def show_dataset(data, out=None, images=DEFAULT_IMAGES, seed=None, split=None, scene=None,
                 force=False):
    """Draw the ground truth of `images` images of a BOP dataset on one contact sheet `out`.

    The images are spread evenly over the split (or drawn at random with `seed`); `scene`
    keeps one scene of it; out defaults to ./<dataset folder name>_gt.png. Returns a
    summary: out, dataset (split folder), total (images in it), tiles [(scene id, image id,
    (x, y, w, h) in the sheet)], columns, rows, has_models.
    """
    data = Path(data)
    out = Path(out) if out is not None else Path(f'{data.resolve().name}_gt.png')
    if isinstance(images, bool) or not isinstance(images, int) or images <= 0:
        raise Pose6dError(f'--images {images!r}: expected a positive number of images to draw')
    if out.is_dir():
        raise Pose6dError(f'--out {out} is a folder; expected a .png file')
    if out.suffix.lower() != '.png':
        raise Pose6dError(f'--out {out}: expected a .png file for the contact sheet')
    if out.exists() and not force:
        raise Pose6dError(f'--out {out} exists; pass --force to replace it, or choose another '
                          'file')
    dataset = _open(data, split, scene)
    if not len(dataset):
        raise DatasetError(f'{dataset.split_dir} holds no annotated images; expected '
                           'scene_gt.json entries with rgb/ (or gray/) images')
    names = _object_names(dataset)
    chosen = pick(len(dataset), images, seed)
    several_scenes = len(dataset.scenes) > 1
    tiles = []
    for index in chosen:
        sample = dataset[index]
        caption = (f'scene {sample.scene_id}, image {sample.image_id}' if several_scenes
                   else f'image {sample.image_id}')
        tiles.append((sample, draw_ground_truth(sample, dataset.object_set, names), caption))
    sheet, boxes = contact_sheet([(tile, caption) for _sample, tile, caption in tiles])
    ok, png = cv2.imencode('.png', cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError('OpenCV could not encode the contact sheet as PNG')
    write_atomic(out, png.tobytes())
    columns = min(COLUMNS, len(tiles))
    return {'out': out, 'dataset': dataset.split_dir, 'total': len(dataset),
            'tiles': [(s.scene_id, s.image_id, box) for (s, _t, _c), box in zip(tiles, boxes)],
            'columns': columns, 'rows': -(-len(tiles) // columns),
            'has_models': dataset.object_set is not None}


def pick(count, wanted, seed=None):
    """Indices of `wanted` of `count` images: evenly spread, or at random with `seed`; sorted."""
    if wanted >= count:
        return list(range(count))
    if seed is None:
        return [(i * count) // wanted for i in range(wanted)]
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(count, wanted, replace=False))


def scaled_image(image, width=TILE_WIDTH):
    """The image (H, W, 3) scaled to `width` pixels, aspect ratio kept."""
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    interpolation = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def draw_ground_truth(sample, objects, names, width=TILE_WIDTH):
    """A Sample's image scaled to `width` with each annotation drawn (see the module doc).

    objects: the dataset's ObjectSet, or None (then only the axes, outline and name).
    names: {object id: name}.
    """
    tile = scaled_image(sample.load_image(), width)
    camera = sample.camera.resized(tile.shape[1], tile.shape[0])
    for index, annotation in enumerate(sample.annotations):
        pose = Pose(annotation.R, annotation.t)  # T_cam_obj
        obj = objects.by_id(annotation.object_id) if objects is not None else None
        colour_index = obj.class_id if obj is not None else annotation.object_id
        color = COLORS_RGB[colour_index % len(COLORS_RGB)]
        if annotation.mask_path is not None:
            draw_outline(tile, sample.load_mask(index), color)
        corners = np.full((8, 2), np.nan)
        if obj is not None:
            keypoints = camera.project(pose.transform(obj.keypoints))  # (9, 2)
            corners = keypoints[:8]
            draw_box(tile, corners, color, 1)
            draw_keypoints(tile, keypoints, color)
            draw_axes(tile, pose, obj.keypoints[8], 0.5 * float(np.max(obj.box_size)), camera,
                      1)
        else:
            draw_axes(tile, pose, np.zeros(3), NO_MODEL_AXIS_LENGTH, camera, 1)
        box = None
        if annotation.box is not None:  # the visible box, scaled as the image
            box = (annotation.box + 0.5) * (tile.shape[1] / sample.camera.width) - 0.5
        anchor = label_anchor(corners, box)
        if anchor is not None:
            draw_label(tile, names.get(annotation.object_id, f'obj_{annotation.object_id:06d}'),
                       anchor, color, scale=0.4)
    return tile


def contact_sheet(tiles, columns=COLUMNS):
    """One RGB image of [(tile (h, w, 3), caption)] in rows of `columns`, captions below.

    Returns (sheet, [(x, y, w, h) of each tile in it]); cells are as large as the largest tile.
    """
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    cell_w = max(tile.shape[1] for tile, _caption in tiles)
    cell_h = max(tile.shape[0] for tile, _caption in tiles) + CAPTION_HEIGHT
    sheet = np.empty((rows * cell_h + (rows + 1) * GAP, columns * cell_w + (columns + 1) * GAP,
                      3), np.uint8)
    sheet[:] = BACKGROUND_RGB
    boxes = []
    for i, (tile, caption) in enumerate(tiles):
        x = GAP + (i % columns) * (cell_w + GAP)
        y = GAP + (i // columns) * (cell_h + GAP)
        h, w = tile.shape[:2]
        sheet[y:y + h, x:x + w] = tile
        cv2.putText(sheet, caption, (x + 3, y + h + CAPTION_HEIGHT - 5),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        boxes.append((x, y, w, h))
    return sheet, boxes


def format_summary(summary):
    """The line `pose6d show` prints."""
    note = '' if summary['has_models'] else ' (no models/models_info.json: no boxes, keypoints)'
    return (f'{len(summary["tiles"])} of {summary["total"]} images of {summary["dataset"]}'
            f'{note}; wrote {summary["out"]}')


def _open(root, split, scene):
    if not root.exists():
        raise DatasetError(f'--data {root} not found; expected a BOP-format dataset folder '
                           '(as pose6d synth writes)')
    dataset = BopDataset(root, split=split)
    if scene is None:
        return dataset
    if scene not in dataset.scenes:
        raise DatasetError(f'scene {scene} is not in {dataset.split_dir}; its scenes are '
                           f'{", ".join(map(str, dataset.scenes)) or "none"}')
    folder = next(d for d in sorted(dataset.split_dir.iterdir())
                  if d.name.isdigit() and int(d.name) == scene and d.is_dir())
    return BopDataset(folder)


def _object_names(dataset):
    """{object id: name}: from models/objects.yaml (pose6d synth keeps them there) if any."""
    names = {obj.object_id: obj.name for obj in dataset.object_set or ()}
    path = dataset.dataset_dir / 'models' / 'objects.yaml'
    if path.is_file():
        try:
            names.update({obj.object_id: obj.name for obj in ObjectSet.from_yaml(path)})
        except Pose6dError:
            pass  # names are a courtesy: the BOP default (obj_XXXXXX) still identifies them
    return names
