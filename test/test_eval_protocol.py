"""`pose6d eval`: the papers' protocol beside the estimator's filters, and false positives."""

import json

import cv2
import numpy as np
import pytest

from pose6d_ros.core.geometry.poses import box_2d, Pose
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.core.inference.evaluate import negatives_summary, passes_filters
from pose6d_ros.tools import cli
from pose6d_ros.tools.report import OPERATING_FILTERS, run_eval, score_negatives


def _exact(obj, annotation, camera, score, reprojection_error):
    keypoints = camera.project(Pose(annotation.R, annotation.t).transform(obj.keypoints))
    return ObjectPose(obj.name, obj.class_id, obj.object_id, score, keypoints,
                      box_2d(keypoints[:8]), annotation.R, annotation.t, reprojection_error, 9,
                      obj.box_size, obj.keypoints[8].copy())


class ExactButFilteredEstimator:
    """The true pose of every instance, with a low score or a poor PnP fit.

    A low score on even images and a poor PnP fit (20 px) on odd ones: the papers' protocol
    scores them all, the filters drop them all.
    """

    def __init__(self, dataset):
        self.objects = dataset.object_set
        self.samples = {dataset[i].load_image().tobytes(): dataset[i] for i in range(len(dataset))}

    def __call__(self, image, camera):
        sample = self.samples[image.tobytes()]
        low_score = sample.image_id % 2 == 0
        return [_exact(self.objects.by_id(a.object_id), a, camera,
                       0.2 if low_score else 0.9, 1.0 if low_score else 20.0)
                for a in sample.annotations]


def test_eval_scores_every_estimate_and_gives_the_filtered_figure_beside(dataset, tmp_path):
    document = run_eval(ExactButFilteredEstimator(dataset), dataset, tmp_path / 'eval',
                        progress=False)
    assert document['mean']['add_0.1d'] == 1.0 and document['mean']['recall'] == 1.0
    filtered = document['filtered']
    assert filtered['min_score'] == OPERATING_FILTERS['min_score'] == 0.3
    assert filtered['max_reprojection_error_px'] == 10.0
    assert filtered['mean']['add_0.1d'] == 0.0 and filtered['mean']['recall'] == 0.0
    text = (tmp_path / 'eval' / 'metrics.md').read_text()
    assert "the papers' protocol" in text and "With the estimator's filters" in text
    saved = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert saved['filtered']['mean']['recall'] == 0.0


def test_the_operating_filters_drop_low_scores_and_poor_fits(dataset):
    sample = dataset[0]
    obj = dataset.object_set.by_id(sample.annotations[0].object_id)
    keep = _exact(obj, sample.annotations[0], sample.camera, 0.31, 9.9)
    assert passes_filters(keep, 0.3, 10.0)
    assert not passes_filters(_exact(obj, sample.annotations[0], sample.camera, 0.29, 1.0),
                              0.3, 10.0)
    assert not passes_filters(_exact(obj, sample.annotations[0], sample.camera, 0.9, 10.1),
                              0.3, 10.0)


def test_negatives_summary_is_the_share_of_images_with_a_detection():
    summary = negatives_summary([0.0, 0.2, 0.55, 0.8])
    assert summary['images'] == 4
    assert summary['with_detection'] == {'0.1': 0.75, '0.3': 0.5, '0.5': 0.5, '0.7': 0.25,
                                         '0.9': 0.0}
    assert summary['highest_score'] == 0.8
    assert summary['curve'][0] == [0.0, 1.0] and summary['curve'][-1] == [1.0, 0.0]
    with pytest.raises(ValueError):
        negatives_summary([])


class BrightnessEstimator:
    """One detection per image with its mean brightness as the score; none on black images."""

    def __init__(self, objects):
        self.objects = objects

    def __call__(self, image, camera):
        score = float(image.mean()) / 255.0
        if score == 0.0:
            return []
        obj = self.objects[0]
        keypoints = np.tile([[camera.width / 2.0, camera.height / 2.0]], (9, 1))
        return [ObjectPose(obj.name, obj.class_id, obj.object_id, score, keypoints,
                           np.array([0.0, 0.0, 4.0, 4.0]), np.eye(3), np.array([0, 0, 1.0]),
                           1.0, 9, obj.box_size, obj.keypoints[8].copy())]


def _write_negatives(folder, levels, size=(40, 30)):
    (folder / 'nested').mkdir(parents=True)
    for i, level in enumerate(levels):
        image = np.full((size[1], size[0], 3), level, np.uint8)
        where = folder / 'nested' if i % 2 else folder
        cv2.imwrite(str(where / f'{i:03d}.png'), image)
    return folder


def test_false_positives_on_a_folder_of_negatives(dataset, tmp_path):
    folder = _write_negatives(tmp_path / 'negatives', [0, 51, 153, 204])   # 0, .2, .6, .8
    document = run_eval(BrightnessEstimator(dataset.object_set), None, tmp_path / 'eval',
                        negatives=sorted(folder.rglob('*.png')), progress=False)
    negatives = document['false_positives']
    assert negatives['images'] == 4
    assert negatives['with_detection']['0.5'] == 0.5 and negatives['with_detection']['0.7'] == 0.25
    assert negatives['highest_score'] == pytest.approx(0.8)
    rows = (tmp_path / 'eval' / 'negatives.csv').read_text().splitlines()
    assert rows[0] == 'image,highest_score,object' and len(rows) == 5
    assert 'False positives' in (tmp_path / 'eval' / 'metrics.md').read_text()
    _, per_image = score_negatives(BrightnessEstimator(dataset.object_set),
                                   sorted(folder.rglob('*.png')))
    assert sorted(round(score, 2) for _, score, _ in per_image) == [0.0, 0.2, 0.6, 0.8]


def test_eval_negatives_command_on_a_tiny_model(tiny_bundle, tmp_path, capsys):
    folder = _write_negatives(tmp_path / 'negatives', [10, 90, 200])
    out = tmp_path / 'fp'
    status = cli.main(['eval', '--model', str(tiny_bundle), '--negatives', str(folder),
                       '--out', str(out), '--device', 'cpu'])
    assert status == 0
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['false_positives']['images'] == 3
    assert set(saved['false_positives']['with_detection']) == {'0.1', '0.3', '0.5', '0.7', '0.9'}
    assert 'objects' not in saved and sorted(saved['files']) == [
        'false_positive_curve.png', 'metrics.json', 'metrics.md', 'negatives.csv']
    capsys.readouterr()
    assert cli.main(['eval', '--model', str(tiny_bundle)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('pose6d: error: ') and '--negatives' in err and '\n' not in err
    assert cli.main(['eval', '--model', str(tiny_bundle), '--negatives',
                     str(tmp_path / 'nowhere')]) == 1
    assert 'negatives folder not found' in capsys.readouterr().err


def test_the_eval_command_runs_the_bundle_under_the_papers_protocol(tiny_bundle, tiny_dataset,
                                                                    tmp_path, monkeypatch):
    """`pose6d eval` builds its estimator with no score or reprojection filter.

    It reports the filtered figure beside.
    """
    from pose6d_ros.core.inference.estimator import Estimator
    from pose6d_ros.tools import report

    configs, real = [], Estimator.from_bundle

    def spy(path, *args, config=None, **kwargs):
        configs.append(config)
        return real(path, *args, config=config, **kwargs)

    monkeypatch.setattr(report.Estimator, 'from_bundle', staticmethod(spy))
    out = tmp_path / 'eval'
    assert cli.main(['eval', '--model', str(tiny_bundle), '--data', str(tiny_dataset),
                     '--out', str(out), '--device', 'cpu']) == 0
    assert len(configs) == 1
    assert configs[0].score_threshold == 0.0 and configs[0].max_reprojection_error == np.inf
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['filtered']['min_score'] == OPERATING_FILTERS['min_score']
    assert saved['filtered']['mean']['recall'] <= saved['mean']['recall']
