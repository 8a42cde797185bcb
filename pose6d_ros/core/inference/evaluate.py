"""Scoring an estimator on a BOP-format dataset with the standard metrics.

Evaluator in the detectron2 style: `reset()`, `process(sample, predictions)` per image,
`evaluate()` at the end. For each object with n annotated instances in an image, its n
best-scoring predictions are scored (as in BOP; with one instance, the LINEMOD protocol), each
against the nearest instance (see `_match`); an instance left without a prediction counts as a
miss (it fails every metric).

The papers score every estimate the network makes (their protocol); the estimator's own
filters (a minimum score, a maximum PnP reprojection error) are an operating choice, so
`passes_filters` lets a report give the filtered figure beside the protocol's.

False positives: on images that hold none of the model's objects (`negatives_summary`), the
share of images with a detection at or above each score threshold, and the scores' curve. The
evaluator collects them from a dataset's own images without any instance of the objects
(`negative_scores`), and keeps every estimate with its verdicts (`estimates`), which is what
score calibration (calibration.py) learns from.
"""

from __future__ import annotations

import copy
from pathlib import Path
import time

import numpy as np

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry import metrics
from pose6d_ros.core.geometry.objects import ObjectSet
from pose6d_ros.core.geometry.poses import Pose

# Score thresholds at which the false-positive share is reported (0.5: the node's min_score
# for a model whose card sets none).
FALSE_POSITIVE_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)
# What makes an estimate right (`estimates` holds each verdict): its pose passes ADD(-S) at
# 0.1 d, the boxes of the model projected with both poses overlap by IoU >= 0.5 (the object
# is there), or the 2D projection error is within 5 px.
VERDICTS = ('add', 'iou_2d', 'proj_2d')


def passes_filters(prediction, min_score, max_reprojection_error):
    """Whether an ObjectPose passes the estimator's operating filters."""
    return (prediction.score >= min_score
            and prediction.reprojection_error <= max_reprojection_error)


def negatives_summary(highest_scores, thresholds=FALSE_POSITIVE_THRESHOLDS, min_score=None):
    """False positives over negative images, from each image's highest detection score.

    highest_scores: one number per image (0 where nothing was detected). min_score: the
    model's default threshold, added to `thresholds` and reported on its own. Returns
    {'images', 'with_detection': {threshold: share of images}, 'highest_score',
    'score_quantiles', 'curve': [[threshold, share], ...] for thresholds 0, 0.05, ..., 1, and
    with min_score: 'min_score', 'at_min_score' (the share there)}.
    """
    scores = np.asarray(highest_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError('no negative images to summarise')
    thresholds = sorted({float(t) for t in thresholds}
                        | ({float(min_score)} if min_score is not None else set()))
    curve = np.linspace(0.0, 1.0, 21)
    summary = {
        'images': int(scores.size),
        'with_detection': {f'{t:g}': float(np.mean(scores >= t)) for t in thresholds},
        'highest_score': float(scores.max()),
        'score_quantiles': {f'p{q}': float(np.percentile(scores, q)) for q in (50, 90, 99)},
        'curve': [[float(t), float(np.mean(scores >= t))] for t in curve],
    }
    if min_score is not None:
        summary['min_score'] = float(min_score)
        summary['at_min_score'] = float(np.mean(scores >= min_score))
    return summary


class PoseEvaluator:
    """Accumulates per-instance errors and summarises them per object and overall."""

    def __init__(self, objects, max_model_points=2000):
        self.objects = objects
        self._points = {}
        self._max_points = max_model_points
        self.reset()

    def reset(self):
        self.records = []      # one dict per ground-truth instance
        self.predictions = []  # (scene_id, image_id, ObjectPose, seconds)
        self.estimates = []    # one dict per estimate: its score and VERDICTS (all False when
        #                        it serves no instance: a false positive or a duplicate)
        self.negative_scores = []  # per image without any of the objects: its highest score
        self.seconds = []

    def model_points(self, obj):
        if obj.name not in self._points:
            self._points[obj.name] = obj.model_points(self._max_points)
        return self._points[obj.name]

    def process(self, sample, predictions, seconds=None):
        """Score the predictions (list[ObjectPose]) for one dataset sample."""
        if seconds is not None:
            self.seconds.append(seconds)
        for p in predictions:
            self.predictions.append((sample.scene_id, sample.image_id, p, seconds or 0.0))
        by_id = {obj.object_id: obj for obj in self.objects}
        matched = _match(sample, predictions, by_id, self.model_points)
        verdicts = {}  # prediction index -> VERDICTS of the instance it serves
        for index, annotation in enumerate(sample.annotations):
            obj = by_id.get(annotation.object_id)
            if obj is None:
                continue
            record = {'object': obj.name, 'scene_id': sample.scene_id,
                      'image_id': sample.image_id, 'visib_fract': annotation.visib_fract,
                      'detected': False, 'score': None, 'add': np.inf, 'add_passed': False,
                      'rotation_deg': np.inf, 'translation': np.inf, 'cm_deg_passed': False,
                      'proj_2d': np.inf, 'proj_2d_passed': False, 'iou_2d': 0.0,
                      'keypoint_errors': [], 'corners_found': 0, 'corner_swaps': 0}
            if index in matched:
                prediction = predictions[matched[index]]
                gt = Pose(annotation.R, annotation.t)
                errors = metrics.pose_errors(prediction.pose, gt, obj, sample.camera,
                                             self.model_points(obj))
                record.update(detected=True, score=float(prediction.score), add=errors.add,
                              add_passed=errors.add_passed,
                              rotation_deg=errors.rotation_deg,
                              translation=errors.translation,
                              cm_deg_passed=errors.cm_deg_passed, proj_2d=errors.proj_2d,
                              proj_2d_passed=errors.proj_2d_passed, iou_2d=errors.iou_2d)
                if prediction.keypoints is not None:
                    found = metrics.keypoint_errors(prediction.keypoints, gt, obj,
                                                    sample.camera)
                    record.update(keypoint_errors=found.errors.tolist(),
                                  corners_found=found.corners_found,
                                  corner_swaps=found.corner_swaps)
                verdicts[matched[index]] = {
                    'add': bool(errors.add_passed), 'proj_2d': bool(errors.proj_2d_passed),
                    'iou_2d': bool(errors.iou_2d >= metrics.IOU_THRESHOLD)}
            self.records.append(record)
        negative = not any(a.object_id in by_id for a in sample.annotations)
        for index, prediction in enumerate(predictions):
            self.estimates.append({'scene_id': sample.scene_id, 'image_id': sample.image_id,
                                   'object': prediction.object_name,
                                   'score': float(prediction.score), 'negative_image': negative,
                                   **verdicts.get(index, dict.fromkeys(VERDICTS, False))})
        if negative:
            self.negative_scores.append(max((float(p.score) for p in predictions), default=0.0))

    def evaluate(self):
        """{'objects': {name: summary}, 'mean': summary over objects, 'instances': n, 'fps'}."""
        per_object = {}
        for obj in self.objects:
            mine = [r for r in self.records if r['object'] == obj.name]
            if mine:
                per_object[obj.name] = _summary(mine)
        keys = ('add_0.1d', '5cm5deg', 'proj_2d_5px', 'iou_2d_0.5', 'recall')
        mean = ({k: float(np.mean([s[k] for s in per_object.values()])) for k in keys}
                if per_object else dict.fromkeys(keys, 0.0))
        fps = 1.0 / float(np.mean(self.seconds)) if self.seconds else None
        negatives = (negatives_summary(self.negative_scores) if self.negative_scores
                     else None)
        return {'objects': per_object, 'mean': mean, 'instances': len(self.records),
                'fps': fps, 'false_positives': negatives}


def _match(sample, predictions, by_id, model_points):
    """{annotation index: prediction index}: which estimate is scored against which instance.

    As in BOP, for an object with n annotated instances in the image only its n best-scoring
    estimates count (a confident wrong estimate is not rescued by a better one ranked below
    it); taken in score order, each serves the nearest (ADD(-S)) instance still unserved.
    """
    matched = {}
    for object_id in {a.object_id for a in sample.annotations if a.object_id in by_id}:
        obj = by_id[object_id]
        points = model_points(obj)
        instances = [i for i, a in enumerate(sample.annotations) if a.object_id == object_id]
        ranked = sorted((i for i, p in enumerate(predictions) if p.object_id == object_id),
                        key=lambda i: -predictions[i].score)[:len(instances)]
        for i in ranked:
            free = [j for j in instances if j not in matched]
            nearest = min(free, key=lambda j: metrics.add_auto(
                predictions[i].pose, Pose(sample.annotations[j].R, sample.annotations[j].t),
                obj, points))
            matched[nearest] = i
    return matched


def _summary(records):
    detected = [r for r in records if r['detected']]
    keypoint_errors = [e for r in detected for e in r['keypoint_errors']]
    corners_found = sum(r['corners_found'] for r in detected)
    corner_swaps = sum(r['corner_swaps'] for r in detected)
    return {
        'instances': len(records),
        'add_0.1d': float(np.mean([r['add_passed'] for r in records])),
        '5cm5deg': float(np.mean([r['cm_deg_passed'] for r in records])),
        'proj_2d_5px': float(np.mean([r['proj_2d_passed'] for r in records])),
        'iou_2d_0.5': float(np.mean([r['iou_2d'] >= metrics.IOU_THRESHOLD for r in records])),
        'recall': len(detected) / len(records),
        'mean_rotation_deg': (float(np.mean([r['rotation_deg'] for r in detected]))
                              if detected else None),
        'mean_translation': (float(np.mean([r['translation'] for r in detected]))
                             if detected else None),
        # the keypoints before PnP: where a found object's pose goes wrong
        'keypoint_px': float(np.median(keypoint_errors)) if keypoint_errors else None,
        'corner_swaps': corner_swaps / corners_found if corners_found else None,
    }


def objects_for_metrics(objects, dataset):
    """The model's objects, each with a mesh the metrics can sample.

    A bundle's mesh path may not exist on this machine; the dataset's own model
    (`models/obj_XXXXXX.ply`, same object id) stands in for it. Objects the dataset does not
    have (by its models_info.json) are never scored and may lack a mesh.
    """
    dataset_objects = {}
    if getattr(dataset, 'object_set', None) is not None:
        dataset_objects = {obj.object_id: obj for obj in dataset.object_set}
    usable = []
    for obj in objects:
        in_dataset = not dataset_objects or obj.object_id in dataset_objects
        if in_dataset and (obj.mesh_path is None or not Path(obj.mesh_path).is_file()):
            other = dataset_objects.get(obj.object_id)
            if other is None or other.mesh_path is None or not Path(other.mesh_path).is_file():
                own = (f'{obj.mesh_path} is missing' if obj.mesh_path
                       else 'its objects file names no mesh')
                raise Pose6dError(
                    f'object {obj.name!r} (id {obj.object_id}) has no mesh to score ADD with: '
                    f'{own} and the dataset has no models/obj_{obj.object_id:06d}.ply')
            obj = copy.copy(obj)
            obj.mesh_path, obj.scale, obj._mesh = other.mesh_path, other.scale, None
        usable.append(obj)
    return ObjectSet(usable)


def evaluate_dataset(estimator, dataset, max_images=None, progress=None):
    """Run the estimator over (the first max_images of) a BopDataset; returns the summary."""
    evaluator = PoseEvaluator(objects_for_metrics(estimator.objects, dataset))
    count = len(dataset) if max_images is None else min(len(dataset), max_images)
    for index in range(count):
        sample = dataset[index]
        image = sample.load_image()
        start = time.perf_counter()
        predictions = estimator(image, sample.camera)
        evaluator.process(sample, predictions, time.perf_counter() - start)
        if progress is not None:
            progress(index + 1, count)
    return evaluator.evaluate(), evaluator
