"""Scoring an estimator on a BOP-format dataset with the standard metrics.

Evaluator in the detectron2 style: `reset()`, `process(sample, predictions)` per image,
`evaluate()` at the end. Each ground-truth instance is matched to the best-scoring prediction
of the same object (one prediction serves one instance, as in the LINEMOD protocol); a
ground-truth instance with no prediction counts as a miss (it fails every metric).
"""

from __future__ import annotations

import time

import numpy as np

from pose6d_ros.core import metrics
from pose6d_ros.core.geometry import Pose


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
        used = set()
        by_id = {obj.object_id: obj for obj in self.objects}
        for annotation in sample.annotations:
            obj = by_id.get(annotation.object_id)
            if obj is None:
                continue
            gt = Pose(annotation.R, annotation.t)
            candidates = [i for i, p in enumerate(predictions)
                          if p.object_id == annotation.object_id and i not in used]
            record = {'object': obj.name, 'scene_id': sample.scene_id,
                      'image_id': sample.image_id, 'visib_fract': annotation.visib_fract,
                      'detected': False, 'add': np.inf, 'add_passed': False,
                      'rotation_deg': np.inf, 'translation': np.inf, 'cm_deg_passed': False,
                      'proj_2d': np.inf, 'proj_2d_passed': False, 'iou_2d': 0.0}
            if candidates:
                points = self.model_points(obj)
                # With several candidates, the one closest to this instance (ADD) serves it.
                best = min(candidates, key=lambda i: metrics.add_auto(
                    predictions[i].pose, gt, obj, points))
                used.add(best)
                errors = metrics.pose_errors(predictions[best].pose, gt, obj, sample.camera,
                                             points)
                record.update(detected=True, add=errors.add, add_passed=errors.add_passed,
                              rotation_deg=errors.rotation_deg,
                              translation=errors.translation,
                              cm_deg_passed=errors.cm_deg_passed, proj_2d=errors.proj_2d,
                              proj_2d_passed=errors.proj_2d_passed)
                if np.isfinite(annotation.box).all():
                    record['iou_2d'] = metrics.iou_2d(predictions[best].box, annotation.box)
            self.records.append(record)

    def evaluate(self):
        """{'objects': {name: summary}, 'mean': summary over objects, 'instances': n, 'fps'}."""
        per_object = {}
        for obj in self.objects:
            mine = [r for r in self.records if r['object'] == obj.name]
            if mine:
                per_object[obj.name] = _summary(mine)
        keys = ('add_0.1d', '5cm5deg', 'proj_2d_5px', 'iou_2d_0.5', 'recall')
        mean = ({k: float(np.mean([s[k] for s in per_object.values()])) for k in keys}
                if per_object else {k: 0.0 for k in keys})
        fps = 1.0 / float(np.mean(self.seconds)) if self.seconds else None
        return {'objects': per_object, 'mean': mean, 'instances': len(self.records),
                'fps': fps}


def _summary(records):
    detected = [r for r in records if r['detected']]
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
    }


def evaluate_dataset(estimator, dataset, max_images=None, progress=None):
    """Run the estimator over (the first max_images of) a BopDataset; returns the summary."""
    evaluator = PoseEvaluator(estimator.objects)
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
