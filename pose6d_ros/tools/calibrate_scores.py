"""`pose6d calibrate-scores`: fit a bundle's score calibration and set its default threshold.

The bundle runs with raw scores and no score threshold over a held-out BOP split (its images
without the objects count as negatives) and optionally a folder of images without the
objects. Every estimate is right or wrong by `verdict` (evaluate.VERDICTS: by default the
object is there, its projected box overlapping the truth's by IoU >= 0.5); the isotonic map of
raw score -> precision (core/inference/score_calibration.py) is fitted on them, and the operating
point is the lowest calibrated score with the target precision (and at most the given share
of negative images with a detection). The card then gets::

    min_score: <that threshold>     # the default of the estimator, the node and the bag tool
    calibration: {method, raw_scores, precision, verdict, data, negatives, counts,
                  operating_point: {target_precision, min_score, precision, recall,
                                    false_positive_rate, ...}, command, date}

and the estimator returns calibrated scores from then on.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry import metrics
from pose6d_ros.core.geometry.camera import CameraModel
from pose6d_ros.core.inference.bundle import load_bundle, update_card
from pose6d_ros.core.inference.estimator import Estimator, EstimatorConfig
from pose6d_ros.core.inference.evaluate import objects_for_metrics, PoseEvaluator, VERDICTS
from pose6d_ros.core.inference.score_calibration import operating_point, ScoreCalibration
from pose6d_ros.tools.report import (
    negative_images,
    progress_bar,
    score_negatives,
)

DEFAULT_TARGET_PRECISION = 0.99
DEFAULT_VERDICT = 'iou_2d'


def instance_right(record, verdict):
    """Whether a ground-truth instance's estimate is right by `verdict` (evaluate.VERDICTS)."""
    if verdict == 'add':
        return bool(record['add_passed'])
    if verdict == 'proj_2d':
        return bool(record['proj_2d_passed'])
    return bool(record['iou_2d'] >= metrics.IOU_THRESHOLD)


def calibrate_scores(model, data, negatives=None, split=None, camera=None,
                     target_precision=DEFAULT_TARGET_PRECISION, max_false_positive_rate=None,
                     verdict=DEFAULT_VERDICT, device='auto', max_images=None, force=False,
                     dry_run=False, command=None, progress=None):
    """Fit the calibration of bundle `model` on `data` (+ `negatives`); returns the report.

    The report: {'calibration': the card section, 'min_score', 'written': whether the card
    was updated}. A card that has a calibration already is replaced only with `force`;
    `dry_run` computes everything and writes nothing.
    """
    if verdict not in VERDICTS:
        raise Pose6dError(f'unknown verdict {verdict!r}; expected one of {", ".join(VERDICTS)}')
    if not 0.0 < target_precision <= 1.0:
        raise Pose6dError(f'target precision must be in (0, 1]; got {target_precision!r}')
    if max_false_positive_rate is not None and not 0.0 <= max_false_positive_rate <= 1.0:
        raise Pose6dError('the false-positive rate must be in [0, 1]; got '
                          f'{max_false_positive_rate!r}')
    bundle = load_bundle(model)
    if bundle.card.get('calibration') is not None and not (force or dry_run):
        raise Pose6dError(f'bundle {model} is calibrated already; pass --force to replace its '
                          'calibration and min_score (or --dry-run to see the new ones)')
    dataset = BopDataset(data, split=split)
    model_ids = [obj.object_id for obj in bundle.objects]
    folder = negative_images(negatives, model_ids) if negatives is not None else []
    if camera is not None and not isinstance(camera, CameraModel):
        camera = CameraModel.load(camera)
    # Raw scores, no score threshold: the map must see every estimate the estimator returns;
    # its other filter (the PnP reprojection error) stays, as it will be applied in use.
    estimator = Estimator.from_bundle(model, device=device, config=EstimatorConfig(
        score_threshold=0.0, calibrate=False))

    evaluator = PoseEvaluator(objects_for_metrics(estimator.objects, dataset))
    count = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    with progress_bar(count, 'pose6d calibrate-scores', progress) as bar:
        for index in range(count):
            sample = dataset[index]
            evaluator.process(sample, estimator(sample.load_image(), sample.camera))
            bar.update(1)
    folder_scores, rows = [], []
    if folder:
        _, rows = score_negatives(estimator, folder, camera, progress, estimates=folder_scores)

    raw = [e['score'] for e in evaluator.estimates] + folder_scores
    right = [e[verdict] for e in evaluator.estimates] + [False] * len(folder_scores)
    negative_images_count = len(evaluator.negative_scores) + len(rows)
    if not evaluator.records:
        raise Pose6dError(f"no instance of the model's objects in {dataset.split_dir}: "
                          'calibration needs images with them (and images without them)')
    if not negative_images_count:
        raise Pose6dError(f"no image without the model's objects in {dataset.split_dir}"
                          f'{" or " + str(negatives) if negatives else ""}: calibration must '
                          'see where the model finds phantoms; synthesise the split with '
                          'scene.negative_share or pass --negatives DIR')
    if not raw:
        raise Pose6dError('the model found nothing in the calibration data; nothing to fit')
    calibration = ScoreCalibration.fit(raw, right)

    found = [calibration(r['score']) if r['detected'] and instance_right(r, verdict)
             else -np.inf for r in evaluator.records]
    highest = {}
    for e in evaluator.estimates:
        if e['negative_image']:
            key = (e['scene_id'], e['image_id'])
            highest[key] = max(highest.get(key, -np.inf), e['score'])
    negative_highs = [calibration(v) for v in highest.values()]
    negative_highs += [calibration(score) for _, score, name in rows if name is not None]
    negative_highs += [-np.inf] * (negative_images_count - len(negative_highs))
    point = operating_point(calibration(np.asarray(raw)), right, found, negative_highs,
                            target_precision, max_false_positive_rate)
    raw_threshold = float(calibration.raw[np.searchsorted(calibration.precision,
                                                          point['min_score'])])
    section = {
        **calibration.to_dict(),
        'verdict': verdict,
        'data': str(Path(dataset.split_dir).resolve()),
        'negatives': None if negatives is None else str(Path(negatives).resolve()),
        'images': count, 'instances': len(evaluator.records),
        'negative_images': negative_images_count,
        'estimates': len(raw), 'right_estimates': int(np.sum(right)),
        'operating_point': {**{k: (round(v, 6) if isinstance(v, float) else v)
                               for k, v in point.items()},
                            'min_score': point['min_score'],
                            'raw_score': raw_threshold},
        'command': command,
        'date': datetime.now().astimezone().isoformat(timespec='seconds'),
    }
    written = False
    if not dry_run:
        update_card(model, {'min_score': point['min_score'], 'calibration': section})
        written = True
    return {'calibration': section, 'min_score': point['min_score'], 'written': written,
            'bundle': str(Path(model).resolve())}


def format_report(report):
    """What `pose6d calibrate-scores` prints."""
    section, point = report['calibration'], report['calibration']['operating_point']
    rate = point['false_positive_rate']
    fpr = 'n/a' if rate is None else f'{100.0 * rate:.2f}%'
    limit = ('' if point['max_false_positive_rate'] is None
             else f' and at most {100.0 * point["max_false_positive_rate"]:g}% false positives')
    lines = [
        f'calibration ({section["method"]}, {len(section["raw_scores"])} knots) from '
        f'{section["estimates"]} estimates ({section["right_estimates"]} right by '
        f'{section["verdict"]}) on {section["images"]} images of {section["data"]} '
        f'({section["instances"]} instances) and {section["negative_images"]} images without '
        'the objects',
        f'operating point for precision {point["target_precision"]:g}{limit}: min_score '
        f'{point["min_score"]:.4f} (raw score {point["raw_score"]:.4f}): precision '
        f'{100.0 * point["precision"]:.2f}%, recall {100.0 * (point["recall"] or 0):.1f}%, '
        f'images without objects with a detection {fpr}',
    ]
    if report['written']:
        lines.append(f'written to {report["bundle"]}/card.yaml: calibration and min_score '
                     f'{report["min_score"]:.4f} (the default threshold of the estimator, the '
                     'node and pose6d bag)')
    else:
        lines.append('dry run: the card is unchanged')
    return '\n'.join(lines)
