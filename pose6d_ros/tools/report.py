"""What `pose6d eval` and `pose6d predict` write: metrics, tables, curves, BOP results, overlays.

`pose6d eval` runs an estimator over a BOP-format dataset and/or a folder of negative images
(`evaluate_model` / `run_eval`) and writes into one folder, atomically (a temporary folder
beside it, renamed into place):

- `metrics.json`      per-object and mean scores, AUCs, fps, and how they were made;
- `metrics.md`        the same as a Markdown table in the papers' style (objects as rows);
- `*_curve.png`       accuracy-vs-threshold curves, one line per object, AUC in the legend;
- `predictions.csv`   every estimate in the BOP results format, for the BOP toolkit;
- `negatives.csv`     each negative image's highest score (its false positive), when there are
                      negative images: a --negatives folder, or images of --data without any
                      of the model's objects;
- `false_positive_curve.png`  the share of negative images with a detection against the score
                      threshold (and the recall beside it when there is --data).

Every estimate is scored, as in the papers; the figures with the estimator's operating
filters (score, PnP reprojection error) stand beside them ('filtered'). On negatives, the
share of images with a detection at each score threshold is the false-positive figure; with
`--update-card` it is written into the bundle's card (`false_positives:`, per set of images).

Scores are fractions in [0, 1] in JSON and percentages in Markdown; distances in metres in JSON
(centimetres in the table), angles in degrees. A ground-truth instance without a prediction
counts as a miss: it fails every metric and has infinite error in the curves.

`pose6d predict` runs it on one image (`predict_image`): an overlay PNG and optional JSON; or
on every frame of a video, a camera or an image folder (`predict_video`): an annotated video.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
import json
import math
import os
from pathlib import Path
import shutil
import sys
import time

import cv2
import numpy as np
from tqdm import tqdm

from pose6d_ros.core.config_fields import load_yaml
from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.data.capture import FrameSource
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.files import make_temp_dir, move_into_place, write_atomic
from pose6d_ros.core.geometry import metrics
from pose6d_ros.core.geometry.camera import (
    camera_from_field_of_view,
    CameraModel,
    default_camera,
    FIELD_OF_VIEW_WARNING,
)
from pose6d_ros.core.geometry.draw import draw_poses
from pose6d_ros.core.inference.bundle import CARD, load_bundle, update_card
from pose6d_ros.core.inference.estimator import (
    DEFAULT_SCORE_THRESHOLD,
    Estimator,
    EstimatorConfig,
)
from pose6d_ros.core.inference.evaluate import (
    negatives_summary,
    objects_for_metrics,
    passes_filters,
    PoseEvaluator,
)

METRICS_JSON = 'metrics.json'
METRICS_MD = 'metrics.md'
PREDICTIONS_CSV = 'predictions.csv'
NEGATIVES_CSV = 'negatives.csv'
FALSE_POSITIVE_PLOT = 'false_positive_curve.png'
BOP_CSV_HEADER = 'scene_id,im_id,obj_id,score,R,t,time'
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
# The estimator's default operating filters for a model whose card sets no min_score;
# `pose6d eval` scores without them (as the papers do) and reports the filtered figure beside.
OPERATING_FILTERS = {'min_score': DEFAULT_SCORE_THRESHOLD,
                     'max_reprojection_error': EstimatorConfig().max_reprojection_error}


@dataclass(frozen=True)
class Curve:
    """One accuracy-vs-threshold plot: which record error, in which unit, over which range."""

    key: str          # name in metrics.json ('auc_<key>') and the file '<key>_curve.png'
    title: str
    xlabel: str
    max_threshold: float  # the x range [0, max] and the AUC's range, in the plotted unit
    marker: float     # the standard threshold, drawn as a dashed line


# ADD(-S) as a fraction of the diameter up to 0.5 d (the 0.1 d test marked), 2D projection up
# to 50 px as in BB8 / YOLO-6D, rotation up to 30 degrees and translation up to 10 cm (the 5 deg
# and 5 cm tests marked; 10 cm is PoseCNN's AUC range).
CURVES = (
    Curve('add', 'ADD(-S)', 'threshold (fraction of the object diameter)', 0.5,
          metrics.ADD_THRESHOLD),
    Curve('proj_2d', '2D projection', 'threshold (pixels)', 50.0, metrics.PROJ_2D_THRESHOLD),
    Curve('rotation', 'Rotation error', 'threshold (degrees)', 30.0,
          metrics.CM_DEG_THRESHOLDS[1]),
    Curve('translation', 'Translation error', 'threshold (cm)', 10.0,
          100.0 * metrics.CM_DEG_THRESHOLDS[0]),
)
SCORE_KEYS = ('add_0.1d', '5cm5deg', 'proj_2d_5px', 'iou_2d_0.5', 'recall')
ERROR_KEYS = ('mean_rotation_deg', 'mean_translation', 'keypoint_px', 'corner_swaps')
# Markdown columns: (summary key, header, scale from the JSON value)
TABLE_COLUMNS = (
    ('add_0.1d', 'ADD(-S) 0.1d', 100.0),
    ('5cm5deg', '5cm 5°', 100.0),
    ('proj_2d_5px', '2D Proj. 5px', 100.0),
    ('iou_2d_0.5', '2D IoU 0.5', 100.0),
    ('recall', 'Recall', 100.0),
    ('mean_rotation_deg', 'R err. (°)', 1.0),
    ('mean_translation', 't err. (cm)', 100.0),
    ('keypoint_px', 'Kp. err. (px)', 1.0),
    ('corner_swaps', 'Corner swaps', 100.0),
)


# --- eval ---------------------------------------------------------------------------------


def default_eval_dir(bundle_path, dataset):
    """`<bundle>/eval/<dataset name>`: the dataset name is its folder's name."""
    return Path(bundle_path) / 'eval' / dataset.dataset_dir.name


def check_output_dir(out_dir, force):
    """Refuse an existing output folder unless force (and refuse a file in its place)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise Pose6dError(f'output path {out_dir} exists and is not a folder')
    if out_dir.exists() and not force:
        raise Pose6dError(f'output folder {out_dir} already exists; pass --force to overwrite '
                          'it or --out to write elsewhere')


def evaluate_model(model, data=None, split=None, object_ids=None, out=None, device='auto',
                   max_images=None, force=False, command=None, progress=None, log=None,
                   onnx=None, negatives=None, camera=None, update=False):
    """`pose6d eval`: load the bundle and the dataset(s), evaluate, write the folder.

    The estimator keeps every estimate (the papers' protocol); the figure with its operating
    filters is reported beside it. negatives: a folder of images holding none of the model's
    objects, or a BOP split (its images without any instance of them; camera: their
    calibration for a plain folder; default: `default_camera` per image size).
    onnx: run the network from this ONNX file of the bundle (onnx_network.py). update: write
    the false-positive figures into the bundle's card (`card_false_positives`).
    Returns the metrics document (what metrics.json holds, with 'out' added).
    """
    if data is None and negatives is None:
        raise Pose6dError('pose6d eval needs --data (a BOP dataset) and/or --negatives (a '
                          "folder of images without the model's objects)")
    if update and onnx:
        raise Pose6dError("--update-card writes the figures of the bundle's own network; "
                          'drop --onnx (or --update-card)')
    dataset = BopDataset(data, split=split, object_ids=object_ids) if data is not None else None
    negative_paths = None
    if negatives is not None:
        model_ids = [obj.object_id for obj in load_bundle(model).objects]
        negative_paths = negative_images(negatives, model_ids)
    if out is not None:
        out_dir = Path(out)
    elif dataset is not None:
        out_dir = default_eval_dir(model, dataset)
    else:
        out_dir = Path(model) / 'eval' / f'negatives_{Path(negatives).resolve().name}'
    check_output_dir(out_dir, force)  # before the long part
    if camera is not None and not isinstance(camera, CameraModel):
        camera = CameraModel.load(camera)
    estimator = Estimator.from_bundle(model, device=device, config=EstimatorConfig(
        onnx=onnx, score_threshold=0.0, max_reprojection_error=math.inf))
    info = {'command': command, 'bundle': bundle_info(model), 'backend': estimator.backend}
    if negatives is not None:
        info['negatives'] = str(Path(negatives).resolve())
    document = run_eval(estimator, dataset, out_dir, max_images=max_images,
                        object_ids=object_ids, force=force, info=info, progress=progress,
                        log=log, negatives=negative_paths, camera=camera)
    if update:
        entries = card_false_positives(document)
        if not entries:
            raise Pose6dError("--update-card: no images without the model's objects were "
                              'evaluated, so there is no false-positive figure to write (give '
                              '--negatives, or --data with such images)')
        card = load_bundle(model).card
        update_card(model, {'false_positives': {**(card.get('false_positives') or {}),
                                                **entries}})
        document['card_updated'] = sorted(entries)
    return document


def card_false_positives(document):
    """{set name: its false-positive figures} for the card's `false_positives:` section.

    One entry per set of negative images in an eval document: the --negatives folder (named
    by its folder) and the images of --data without the objects (named <dataset>/<split>).
    """
    entries = {}
    for key in ('false_positives', 'false_positives_in_data'):
        summary = document.get(key)
        if not summary:
            continue
        entry = {'images': summary['images'], 'source': summary['folder']}
        if 'min_score' in summary:
            entry['min_score'] = summary['min_score']
            entry['with_detection_at_min_score'] = round(summary['at_min_score'], 4)
        entry.update({
            'with_detection': {t: round(v, 4) for t, v in summary['with_detection'].items()},
            'highest_score': round(summary['highest_score'], 4),
            'curve': [[round(t, 2), round(v, 4)] for t, v in summary['curve']],
            'command': document.get('command'), 'date': document.get('date'),
        })
        entries[summary['name']] = entry
    return entries


def run_eval(estimator, dataset, out_dir, max_images=None, object_ids=None, force=False,
             info=None, progress=None, log=None, negatives=None, camera=None):
    """Run `estimator` (image, camera -> list[ObjectPose]) over `dataset` and write `out_dir`.

    The estimator needs an `objects` ObjectSet; a `timings` dict and a `device` are reported
    when it has them. object_ids keeps only the estimates of those objects. The scores are
    those of every estimate the estimator returns; 'filtered' holds them again for the
    estimates that pass the estimator's default filters (OPERATING_FILTERS). negatives: image
    paths without the model's objects, for the false-positive figure (camera as in
    `score_negatives`); dataset may then be None. progress: True, False, or None (a tqdm bar
    when stderr is a terminal). One untimed warm-up call on the first image comes before the
    timed pass. Returns the metrics document.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, force)
    if dataset is None and not negatives:
        raise Pose6dError('nothing to evaluate: give a dataset, negative images, or both')
    document, evaluator, objects = {'files': []}, None, estimator.objects
    min_score = getattr(estimator, 'card_min_score', None)
    rows, scores = [], {}   # negatives.csv; per set of negatives its images' highest scores
    if dataset is not None:
        document, evaluator, objects, rows = _score_dataset(estimator, dataset, max_images,
                                                            object_ids, info, progress)
        if rows:
            summary = negatives_summary([score for _, score, _ in rows], min_score=min_score)
            summary.update(folder=str(Path(dataset.split_dir).resolve()),
                           name=f'{Path(dataset.dataset_dir).name}/{dataset.split}')
            document['false_positives_in_data'] = summary
            scores[summary['name']] = [score for _, score, _ in rows]
    if negatives:
        summary, negative_rows = score_negatives(estimator, negatives, camera, progress,
                                                 min_score=min_score)
        if (info or {}).get('negatives'):
            summary['folder'] = info['negatives']
        summary['name'] = Path(summary['folder']).name
        document = {**({} if dataset is not None else _header(info, estimator)), **document,
                    'false_positives': summary}
        scores = {summary['name']: [score for _, score, _ in negative_rows], **scores}
        rows = negative_rows + rows
    if rows:
        document['negative_rows'] = rows
        document['negative_scores'] = scores
    document['markdown'] = markdown_report(document)
    write_eval_folder(out_dir, document, evaluator, objects, force)
    document['out'] = str(out_dir)
    if log is not None:
        log(document['markdown'])
    return document


def _score_dataset(estimator, dataset, max_images, object_ids, info, progress):
    """Score every image of the dataset.

    Returns (metrics document, protocol evaluator, objects, rows of its negative images:
    (image, highest score, its object or None) per image without any instance of the
    model's objects).
    """
    objects = objects_for_metrics(estimator.objects, dataset)
    wanted = None if object_ids is None else {int(i) for i in object_ids}
    count = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    if count == 0:
        raise Pose6dError(f'dataset {dataset.split_dir} has no images to evaluate')
    evaluator, filtered = PoseEvaluator(objects), PoseEvaluator(objects)
    operating = operating_filters(estimator)
    model_ids = {obj.object_id for obj in objects}
    stage_seconds, negative_rows = {}, []
    first = dataset[0]
    estimator(first.load_image(), first.camera)  # warm-up (lazy init, autotuning): not timed
    with progress_bar(count, 'pose6d eval', progress) as bar:
        for index in range(count):
            sample = dataset[index]
            image = sample.load_image()
            start = time.perf_counter()
            predictions = estimator(image, sample.camera)
            seconds = time.perf_counter() - start
            if wanted is not None:
                predictions = [p for p in predictions if p.object_id in wanted]
            evaluator.process(sample, predictions, seconds)
            filtered.process(sample, [p for p in predictions if passes_filters(p, **operating)])
            if not any(a.object_id in model_ids for a in sample.annotations):
                best = max(predictions, key=lambda p: p.score, default=None)
                negative_rows.append((str(sample.image_path), best.score if best else 0.0,
                                      best.object_name if best else None))
            for stage, value in (getattr(estimator, 'timings', None) or {}).items():
                stage_seconds.setdefault(stage, []).append(value)
            bar.update(1)
    summary = evaluator.evaluate()
    if summary['instances'] == 0:
        raise Pose6dError(
            f"no ground-truth instance of the model's objects (ids "
            f'{", ".join(str(o.object_id) for o in objects)}) in the first {count} images of '
            f'{dataset.split_dir}; is it the right dataset? (For the false positives on a split '
            'without them, pass it as --negatives.)')
    document = metrics_document(evaluator, summary, objects, dataset, count, info,
                                stage_seconds, getattr(estimator, 'device', None))
    kept = filtered.evaluate()
    document['filtered'] = {
        'min_score': operating['min_score'],
        'max_reprojection_error_px': operating['max_reprojection_error'],
        'objects': {name: {k: values[k] for k in SCORE_KEYS}
                    for name, values in kept['objects'].items()},
        'mean': {k: kept['mean'][k] for k in SCORE_KEYS},
    }
    return document, evaluator, objects, negative_rows


def operating_filters(estimator):
    """The estimator's default filters: OPERATING_FILTERS with the card's min_score if any."""
    min_score = getattr(estimator, 'card_min_score', None)
    return {**OPERATING_FILTERS, **({} if min_score is None else {'min_score': min_score})}


def progress_bar(count, desc, progress):
    """A tqdm bar: progress True, False, or None (shown when stderr is a terminal)."""
    return tqdm(total=count, unit='img', desc=desc, dynamic_ncols=True,
                disable=(not sys.stderr.isatty()) if progress is None else not progress)


def _header(info, estimator):
    info = info or {}
    return {'command': info.get('command'), 'bundle': info.get('bundle'),
            'date': datetime.now().astimezone().isoformat(timespec='seconds'),
            'device': getattr(estimator, 'device', None), 'backend': info.get('backend')}


# --- negatives ----------------------------------------------------------------------------


def negative_images(folder, object_ids=None):
    """The images under `folder` that hold none of the objects `object_ids`.

    A BOP dataset or split (a scene_gt.json under it): its images without an instance of those
    objects, as (path, camera) pairs with the split's cameras. Any other folder: every image
    file under it (searched recursively), each assumed to hold none of them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise Pose6dError(f'negatives folder not found: {folder} (expected a folder of images '
                          "that hold none of the model's objects, or a BOP split)")
    if next(folder.rglob('scene_gt.json'), None) is not None:
        dataset = BopDataset(folder)
        wanted = None if object_ids is None else {int(i) for i in object_ids}
        pairs = [(sample.image_path, sample.camera) for sample in dataset
                 if not any(wanted is None or a.object_id in wanted
                            for a in sample.annotations)]
        if not pairs:
            raise Pose6dError(f'every image of the BOP split {dataset.split_dir} holds one of '
                              "the model's objects: no negatives there")
        return pairs
    paths = sorted(p for p in folder.rglob('*')
                   if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and 'mask' not in p.parent.name)
    if not paths:
        raise Pose6dError(f'no images ({", ".join(IMAGE_SUFFIXES)}) under {folder}')
    return paths


def score_negatives(estimator, paths, camera=None, progress=None, min_score=None,
                    estimates=None):
    """Run the estimator on images without the model's objects: (summary, per-image rows).

    Every detection on such an image is a false positive. paths: image files, or (file,
    CameraModel) pairs (a BOP split's, `negative_images`); camera: the calibration of plain
    files (default: `default_camera` of each image's size). min_score: the model's default
    threshold, reported on its own (`negatives_summary`). estimates: a list that receives the
    score of every estimate (calibration.py fits on them). rows: (image, highest score, its
    object or None) per image.
    """
    rows, highest = [], []
    with progress_bar(len(paths), 'pose6d eval negatives', progress) as bar:
        for item in paths:
            path, cam = item if isinstance(item, tuple) else (item, camera)
            image = load_image_rgb(path)
            height, width = image.shape[:2]
            cam = cam if cam is not None else default_camera(width, height)
            if cam.size != (width, height):
                raise Pose6dError(f'negative image {path} is {width}x{height} but the camera '
                                  f'is {cam.width}x{cam.height}')
            found = estimator(image, cam)
            if estimates is not None:
                estimates.extend(float(p.score) for p in found)
            best = max(found, key=lambda p: p.score, default=None)
            highest.append(best.score if best is not None else 0.0)
            rows.append((str(path), highest[-1], best.object_name if best else None))
            bar.update(1)
    summary = negatives_summary(highest, min_score=min_score)
    first = paths[0][0] if isinstance(paths[0], tuple) else paths[0]
    summary['folder'] = str(Path(first).parent)
    return summary, rows


def bundle_info(path):
    """What metrics.json and the predict JSON say about a model bundle (from its card)."""
    card = load_yaml(Path(path) / CARD, 'bundle card')
    training = card.get('training') or {}
    return {'path': str(Path(path).resolve()), 'method': card.get('method'),
            'classes': list(card.get('classes') or []),
            'input_size': list(card.get('input_size') or []),
            'training': {k: training[k] for k in ('data', 'iterations', 'epochs')
                         if k in training}}


def curve_errors(records, obj, curve_key):
    """Per-instance errors of one object in a curve's plotted unit (inf for a miss)."""
    mine = [r for r in records if r['object'] == obj.name]
    if curve_key == 'add':
        return np.array([r['add'] / obj.diameter for r in mine], dtype=np.float64)
    if curve_key == 'proj_2d':
        return np.array([r['proj_2d'] for r in mine], dtype=np.float64)
    if curve_key == 'rotation':
        return np.array([r['rotation_deg'] for r in mine], dtype=np.float64)
    if curve_key == 'translation':
        return np.array([100.0 * r['translation'] for r in mine], dtype=np.float64)
    raise ValueError(f'unknown curve {curve_key!r}')


def metrics_document(evaluator, summary, objects, dataset, images, info=None,
                     stage_seconds=None, device=None):
    """The content of metrics.json (plus 'markdown', the table of metrics.md)."""
    info = info or {}
    per_object = {}
    for obj in objects:
        if obj.name not in summary['objects']:
            continue
        entry = {'object_id': obj.object_id,
                 'metric': 'ADD-S' if obj.uses_add_s else 'ADD',
                 'diameter': float(obj.diameter)}
        entry.update(summary['objects'][obj.name])
        for curve in CURVES:
            errors = curve_errors(evaluator.records, obj, curve.key)
            entry[f'auc_{curve.key}'] = metrics.curve_auc(errors, curve.max_threshold)
        per_object[obj.name] = entry
    mean = dict(summary['mean'])
    for key in ERROR_KEYS + tuple(f'auc_{c.key}' for c in CURVES):
        values = [e[key] for e in per_object.values() if e.get(key) is not None]
        mean[key] = float(np.mean(values)) if values else None
    timings = {stage: 1000.0 * float(np.mean(values))
               for stage, values in (stage_seconds or {}).items() if values}
    document = {
        'command': info.get('command'),
        'bundle': info.get('bundle'),
        'dataset': {'path': str(Path(dataset.dataset_dir).resolve()),
                    'name': Path(dataset.dataset_dir).name, 'split': dataset.split,
                    'images': int(images), 'instances': int(summary['instances'])},
        'date': datetime.now().astimezone().isoformat(timespec='seconds'),
        'device': device,
        'backend': info.get('backend'),   # 'pytorch' or 'onnxruntime <precision>'
        'thresholds': {
            'add': f'{metrics.ADD_THRESHOLD} of the diameter (ADD-S for symmetric objects)',
            '5cm5deg': f'{metrics.CM_DEG_THRESHOLDS[0]} m and {metrics.CM_DEG_THRESHOLDS[1]} deg',
            'proj_2d': f'{metrics.PROJ_2D_THRESHOLD} px',
            'iou_2d': metrics.IOU_THRESHOLD,
            'auc_ranges': {c.key: f'0..{c.max_threshold:g} {_unit(c)}' for c in CURVES},
        },
        'units': 'scores are fractions in [0, 1]; mean_translation in metres; '
                 'mean_rotation_deg in degrees; mean errors over detected instances; '
                 'keypoint_px: median pixel error of the estimated 2D keypoints before PnP; '
                 'corner_swaps: share of found corners nearer another corner than their own',
        'objects': per_object,
        'mean': mean,
        'instances': int(summary['instances']),
        'fps': summary['fps'],
        'timings_ms': timings,
    }
    document['markdown'] = markdown_table(document)
    return document


def _unit(curve):
    return {'add': 'd', 'proj_2d': 'px', 'rotation': 'deg', 'translation': 'cm'}[curve.key]


def markdown_table(document):
    """The papers' table: objects as rows, metrics as columns (percentages), mean row last."""
    table = score_table(document['objects'], document['mean'], TABLE_COLUMNS)
    fps = document.get('fps')
    dataset = document.get('dataset') or {}
    notes = [f'{document.get("instances", 0)} instances in {dataset.get("images", "?")} images '
             f'of {dataset.get("name", "?")}/{dataset.get("split", "?")}, every estimate '
             "scored (the papers' protocol)"]
    if fps:
        device = document.get('device')
        backend = document.get('backend')
        if device and backend and backend != 'pytorch':
            device = f'{device} with {backend}'
        notes.append(f'{fps:.1f} fps' + (f' on {device}' if device else '')
                     + ' (estimator only, one image at a time)')
    return table + '\n' + '; '.join(notes) + '.\n'


def score_table(objects, mean, columns):
    """Markdown rows of `objects` ({name: values}) and a bold mean row, in `columns`."""
    header = ['Object'] + [title for _, title, _ in columns]
    lines = ['| ' + ' | '.join(header) + ' |', '| --- ' + '| ---: ' * len(columns) + '|']

    def row(name, values, bold=False):
        cells = [_cell(values.get(key), scale) for key, _, scale in columns]
        if bold:
            name, cells = f'**{name}**', [f'**{c}**' for c in cells]
        return '| ' + ' | '.join([name] + cells) + ' |'

    for name, values in objects.items():
        lines.append(row(f'{name}{" (ADD-S)" if values.get("metric") == "ADD-S" else ""}',
                         values))
    lines.append(row('Mean', mean, bold=True))
    return '\n'.join(lines) + '\n'


def _cell(value, scale):
    if value is None or not np.isfinite(value):
        return '–'
    return f'{value * scale:.1f}'


def write_eval_folder(out_dir, document, evaluator, objects, force=False):
    """Write every eval output into a temporary folder beside out_dir, then move it in place.

    evaluator: the dataset's PoseEvaluator (curves, predictions.csv), or None for negatives
    alone; the document's 'negative_rows' become negatives.csv.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = make_temp_dir(out_dir.parent, f'.{out_dir.name}.')
    try:
        files = [METRICS_JSON, METRICS_MD]
        if evaluator is not None:
            files += [PREDICTIONS_CSV] + plot_curves(evaluator.records, objects, staging)
            write_bop_csv(staging / PREDICTIONS_CSV, evaluator.predictions)
        rows = document.pop('negative_rows', None)
        scores = document.pop('negative_scores', None)
        if scores:
            plot_false_positives(scores, evaluator.records if evaluator else None,
                                 staging / FALSE_POSITIVE_PLOT,
                                 _min_score_of(document))
            files.append(FALSE_POSITIVE_PLOT)
        if rows is not None:
            files.append(NEGATIVES_CSV)
            (staging / NEGATIVES_CSV).write_text('image,highest_score,object\n' + ''.join(
                f'{image},{score:.4f},{name or ""}\n' for image, score, name in rows))
        document['files'] = files
        body = {k: v for k, v in document.items() if k not in ('markdown', 'out')}
        (staging / METRICS_JSON).write_text(json.dumps(_json_safe(body), indent=2) + '\n')
        (staging / METRICS_MD).write_text(_markdown_file(document))
        move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def markdown_report(document):
    """metrics.md's body: the papers' table, the filtered one, and the false positives."""
    parts = []
    if 'objects' in document:
        parts.append(markdown_table(document))
        filtered = document.get('filtered')
        if filtered:
            parts.append(f'With the estimator\'s filters (score >= {filtered["min_score"]:g}, '
                         f'PnP reprojection <= {filtered["max_reprojection_error_px"]:g} px), '
                         'as the node and `pose6d predict` run it:\n\n'
                         + score_table(filtered['objects'], filtered['mean'],
                                       [c for c in TABLE_COLUMNS if c[0] in SCORE_KEYS]))
    for key in ('false_positives', 'false_positives_in_data'):
        if document.get(key):
            parts.append(_false_positive_table(document[key]))
    if any(document.get(k) for k in ('false_positives', 'false_positives_in_data')):
        parts.append(f'![false positives against the score threshold]({FALSE_POSITIVE_PLOT})\n')
    return '\n'.join(parts)


def _false_positive_table(negatives):
    """Markdown: the share of negative images with a detection per threshold, and its curve."""
    thresholds = list(negatives['with_detection'])
    default = negatives.get('min_score')
    header = ' | '.join(f'>= {t}' + (' (default)' if default is not None
                                     and t == f'{default:g}' else '') for t in thresholds)
    cells = ' | '.join(f'{100.0 * v:.1f}' for v in negatives['with_detection'].values())
    curve = ', '.join(f'{t:g}: {100.0 * v:.1f}' for t, v in negatives['curve'][2::2])
    return (f'False positives: images with a detection at a score of, on '
            f'{negatives["images"]} images without the model\'s objects '
            f'({negatives["folder"]}), in %:\n\n| {header} |\n|'
            + ' ---: |' * len(thresholds)
            + f'\n| {cells} |\n\nHighest score {negatives["highest_score"]:.2f}. Score curve '
            f'(threshold: % of images with a detection): {curve}.\n')


def _min_score_of(document):
    for key in ('false_positives', 'false_positives_in_data'):
        if (document.get(key) or {}).get('min_score') is not None:
            return document[key]['min_score']
    return None


def plot_false_positives(scores, records, path, min_score=None):
    """Write the false-positive curve PNG.

    Per set of negative images, the % of them with a detection at a score >= the threshold;
    with records (a dataset's instances), the recall and ADD(-S) 0.1d of the instances whose
    estimate scores >= the threshold beside it.
    """
    # deferred: matplotlib is heavy to import and only the plots need it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    thresholds = np.linspace(0.0, 1.0, 201)
    figure = Figure(figsize=(5.6, 3.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, values in scores.items():
        values = np.asarray(values, dtype=np.float64)
        axes.plot(thresholds, [100.0 * np.mean(values >= t) for t in thresholds],
                  linewidth=1.5, label=f'images with a detection: {name} ({values.size})')
    if records:
        found = np.array([r['score'] if r['detected'] else -np.inf for r in records])
        right = np.array([r['add_passed'] for r in records])
        axes.plot(thresholds, [100.0 * np.mean(found >= t) for t in thresholds], 'k--',
                  linewidth=1.2, label=f'recall ({len(records)} instances)')
        axes.plot(thresholds, [100.0 * np.mean((found >= t) & right) for t in thresholds],
                  'k:', linewidth=1.2, label='ADD(-S) 0.1d')
    if min_score is not None:
        axes.axvline(min_score, color='0.5', linestyle=':', linewidth=1.0)
    axes.set(xlim=(0.0, 1.0), ylim=(0.0, 100.0), xlabel='score threshold', ylabel='%',
             title='False positives against the score threshold')
    axes.grid(True, alpha=0.3)
    axes.legend(loc='upper right', fontsize='small')
    figure.tight_layout()
    figure.savefig(path)
    return path


def _markdown_file(document):
    bundle = document.get('bundle') or {}
    lines = [f'# Evaluation of {bundle.get("path", "a model")}', '']
    if document.get('command'):
        lines += [f'`{document["command"]}` ({document["date"]})', '']
    lines += [document['markdown']]
    if 'objects' in document:
        lines += ['ADD(-S) 0.1d: ADD (ADD-S for symmetric objects) below 10% of the '
                  'diameter; 5cm 5°: both errors below; 2D Proj. 5px: mean reprojection of the '
                  'model points within 5 pixels; 2D IoU 0.5: the boxes of the model projected '
                  'with both poses overlap by more than 0.5 (Zhang et al.); errors are means '
                  'over detected instances.', '']
    return '\n'.join(lines)


def _json_safe(value):
    """JSON-ready copy: inf/NaN -> None, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- curves -------------------------------------------------------------------------------


def plot_curves(records, objects, folder):
    """Write one PNG per curve in CURVES into folder; returns the file names.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch).
    """
    # deferred: matplotlib is heavy to import and only the curves need it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = []
    scored = [obj for obj in objects if any(r['object'] == obj.name for r in records)]
    for curve in CURVES:
        figure = Figure(figsize=(5.0, 3.8), dpi=120)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        thresholds = np.linspace(0.0, curve.max_threshold, 201)
        all_curves = []
        for obj in scored:
            errors = curve_errors(records, obj, curve.key)
            accuracy = metrics.accuracy_curve(errors, thresholds)
            all_curves.append(accuracy)
            auc = metrics.curve_auc(errors, curve.max_threshold)
            axes.plot(thresholds, 100.0 * accuracy, linewidth=1.5,
                      label=f'{obj.name} (AUC {100.0 * auc:.1f})')
        if len(all_curves) > 1:
            mean = np.mean(all_curves, axis=0)
            auc = float(np.mean([metrics.curve_auc(curve_errors(records, o, curve.key),
                                                   curve.max_threshold) for o in scored]))
            axes.plot(thresholds, 100.0 * mean, 'k--', linewidth=2.0,
                      label=f'mean (AUC {100.0 * auc:.1f})')
        axes.axvline(curve.marker, color='0.6', linestyle=':', linewidth=1.0)
        axes.set_xlim(0.0, curve.max_threshold)
        axes.set_ylim(0.0, 100.0)
        axes.set_xlabel(curve.xlabel)
        axes.set_ylabel('accuracy (%)')
        axes.set_title(f'{curve.title} accuracy')
        axes.grid(True, alpha=0.3)
        if scored:
            axes.legend(loc='lower right', fontsize='small')
        figure.tight_layout()
        name = f'{curve.key}_curve.png'
        figure.savefig(Path(folder) / name)
        names.append(name)
    return names


# --- BOP results ----------------------------------------------------------------------------


def write_bop_csv(path, predictions):
    """predictions: (scene_id, image_id, ObjectPose, seconds) -> BOP results CSV.

    `scene_id,im_id,obj_id,score,R,t,time`: R row-major (9 numbers), t in millimetres (3),
    separated by spaces; time is the seconds for the whole image (the same on each of its
    rows), -1 when unknown. Numbers are written in full (round-trip) precision.
    """
    rows = sorted(predictions, key=lambda p: (p[0], p[1], -p[2].score))
    lines = [BOP_CSV_HEADER]
    for scene_id, image_id, pose, seconds in rows:
        R = ' '.join(_number(v) for v in np.asarray(pose.R, dtype=np.float64).ravel())
        t = ' '.join(_number(1000.0 * v) for v in np.asarray(pose.t, dtype=np.float64))
        time_s = _number(seconds) if seconds is not None and seconds > 0 else '-1'
        lines.append(f'{int(scene_id)},{int(image_id)},{int(pose.object_id)},'
                     f'{_number(pose.score)},{R},{t},{time_s}')
    Path(path).write_text('\n'.join(lines) + '\n')


def _number(value):
    return repr(float(value))


def read_bop_csv(path):
    """Read a BOP results CSV: list of dicts (scene_id, im_id, obj_id, score, R, t (m), time)."""
    path = Path(path)
    text = path.read_text().splitlines()
    if not text or text[0].strip() != BOP_CSV_HEADER:
        raise Pose6dError(f'{path} is not a BOP results file: the first line must be '
                          f'{BOP_CSV_HEADER!r}')
    rows = []
    for number, line in enumerate(text[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(',')
        try:
            scene, image, obj, score, R, t, seconds = fields
            R = np.array(R.split(), dtype=np.float64).reshape(3, 3)
            t = np.array(t.split(), dtype=np.float64).reshape(3) / 1000.0
            rows.append({'scene_id': int(scene), 'im_id': int(image), 'obj_id': int(obj),
                         'score': float(score), 'R': R, 't': t, 'time': float(seconds)})
        except ValueError:
            raise Pose6dError(f'{path}, line {number}: expected 7 fields with 9 numbers in R '
                              f'and 3 in t; got {line!r}') from None
    return rows


# --- predict ------------------------------------------------------------------------------


def load_image_rgb(path):
    """An image file as RGB uint8 (H, W, 3); a clear error when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise Pose6dError(f'image not found: {path}')
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise Pose6dError(f'cannot read image {path}: not a readable image file (expected a '
                          'PNG, JPEG, BMP or TIFF)')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def predict_image(estimator, image_path, out, camera=None, json_path=None, force=False,
                  bundle=None, warn=None):
    """Run the estimator on one image file; write the overlay PNG and optionally the JSON.

    camera: a CameraModel or a calibration file path; None uses `default_camera` and calls
    warn(message). Returns the list of ObjectPose.
    """
    outputs = [Path(out)] + ([Path(json_path)] if json_path else [])
    for path in outputs:
        if path.exists() and not force:
            raise Pose6dError(f'{path} already exists; pass --force to overwrite it')
    image = load_image_rgb(image_path)
    height, width = image.shape[:2]
    assumed = camera is None
    if assumed:
        camera = default_camera(width, height)
        if warn is not None:
            warn(f'no --camera given: assuming a pinhole camera with fx = fy = '
                 f'{camera.fx:g} px and the principal point at the image centre; the poses '
                 '(distances above all) are only as good as that guess')
    elif not isinstance(camera, CameraModel):
        camera = CameraModel.load(camera)
    if camera.size != (width, height):
        raise Pose6dError(f'image {image_path} is {width}x{height} but the camera is '
                          f'{camera.width}x{camera.height}; expected the calibration of the '
                          'camera that took the image')
    poses = estimator(image, camera)
    overlay = draw_poses(image, poses, camera)
    ok, png = cv2.imencode('.png', cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    if not ok:
        raise Pose6dError(f'OpenCV could not encode the overlay for {out}')
    write_atomic(out, png.tobytes())
    if json_path:
        document = {
            'image': str(Path(image_path).resolve()),
            'camera': {**camera.to_dict(), 'assumed': assumed},
            'bundle': bundle,
            'backend': getattr(estimator, 'backend', None),
            'quaternion_order': 'x, y, z, w',
            'timings_ms': {k: 1000.0 * v
                           for k, v in (getattr(estimator, 'timings', None) or {}).items()},
            'poses': [pose.to_dict() for pose in poses],
        }
        write_atomic(json_path, (json.dumps(_json_safe(document), indent=2) + '\n').encode())
    return poses


# Video containers `predict_video` writes -> the codec asked of OpenCV's FFmpeg writer.
VIDEO_CODECS = {'.mp4': 'mp4v', '.avi': 'MJPG', '.mkv': 'mp4v'}


def predict_video(estimator, source, out, camera=None, field_of_view=None, json_path=None,
                  max_frames=None, force=False, warn=None, log=None):
    """Run the estimator on every frame of `source`; write an annotated video (and JSON).

    source: a video file, a camera ('0', '/dev/video0') or an image folder, as FrameSource
    reads it. The camera model: `camera` (a CameraModel or a calibration file), else a rough
    one from `field_of_view` (degrees), else `default_camera`; both guesses call
    warn(message). out: .mp4 (mp4v) or .avi (MJPG), at the source's frame rate (10 fps for
    an image folder), written under a temporary name and moved into place. A camera runs
    until `max_frames` or Ctrl-C, which ends the video cleanly. json_path: every frame's
    poses. Returns a summary dict (frames, frames with an object, seconds, fps).
    """
    out = Path(out)
    fourcc = VIDEO_CODECS.get(out.suffix.lower())
    if fourcc is None:
        raise Pose6dError(f'--out {out}: expected a video file ending in '
                          f'{", ".join(VIDEO_CODECS)}')
    for path in [out] + ([Path(json_path)] if json_path else []):
        if path.exists() and not force:
            raise Pose6dError(f'{path} already exists; pass --force to overwrite it')
    if camera is not None and not isinstance(camera, CameraModel):
        camera = CameraModel.load(camera)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f'.{out.stem}.{os.getpid()}.tmp{out.suffix}')
    writer, records, seconds = None, [], []
    try:
        with FrameSource(source, warn=warn) as frames:
            fps = frames.nominal_fps or 10.0
            try:
                while max_frames is None or len(records) < max_frames:
                    frame = frames.read()
                    if frame is None:
                        break
                    height, width = frame.rgb.shape[:2]
                    if camera is None:
                        camera = _guessed_camera(width, height, field_of_view, warn)
                    if camera.size != (width, height):
                        raise Pose6dError(f'{frame.name} of {source} is {width}x{height} but the '
                                          f'camera is {camera.width}x{camera.height}; expected '
                                          'the calibration of this camera at this resolution')
                    if writer is None:
                        writer = cv2.VideoWriter(str(staging), cv2.VideoWriter_fourcc(*fourcc),
                                                 fps, (width, height))
                        if not writer.isOpened():
                            raise Pose6dError(f'this OpenCV cannot write {out.suffix} videos '
                                              f'({fourcc}); try --out with another of '
                                              f'{", ".join(VIDEO_CODECS)}')
                    start = time.perf_counter()
                    poses = estimator(frame.rgb, camera)
                    seconds.append(time.perf_counter() - start)
                    overlay = draw_poses(frame.rgb, poses, camera)
                    writer.write(np.ascontiguousarray(overlay[:, :, ::-1]))
                    records.append({'frame': frame.index, 'name': frame.name,
                                    'poses': [pose.to_dict() for pose in poses]})
                    if log is not None and frames.kind == 'device' and len(records) % 30 == 0:
                        log(f'{len(records)} frames')
            except KeyboardInterrupt:  # a camera runs until Ctrl-C: keep what was written
                if log is not None:
                    log(f'stopped after {len(records)} frames')
        if writer is None:
            raise Pose6dError(f'no frame could be read from {source}')
        writer.release()
        os.replace(staging, out)
    finally:
        if writer is not None:
            writer.release()
        staging.unlink(missing_ok=True)
    summary = {'frames': len(records),
               'frames_with_objects': sum(bool(r['poses']) for r in records),
               'estimator_seconds_median': float(np.median(seconds)),
               'video_fps': fps, 'out': str(out)}
    if json_path:
        document = {'source': str(source), 'camera': camera.to_dict(),
                    'backend': getattr(estimator, 'backend', None),
                    'quaternion_order': 'x, y, z, w', 'frames': records}
        write_atomic(json_path, (json.dumps(_json_safe(document), indent=1) + '\n').encode())
    return summary


def _guessed_camera(width, height, field_of_view, warn):
    """The camera of an uncalibrated source: from its field of view, else `default_camera`."""
    if field_of_view is not None:
        camera = camera_from_field_of_view(width, height, field_of_view)
        if warn is not None:
            warn(FIELD_OF_VIEW_WARNING.format(fov=field_of_view, focal=camera.fx))
        return camera
    camera = default_camera(width, height)
    if warn is not None:
        warn(f'no --camera or --field-of-view given: assuming a pinhole camera with fx = fy = '
             f'{camera.fx:g} px and the principal point at the image centre; the poses '
             '(distances above all) are only as good as that guess')
    return camera
