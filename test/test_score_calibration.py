"""Calibrated scores, the model's default threshold from its card, and false positives on cards."""

import json
import shutil

import numpy as np
import pytest
import yaml

from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.inference.bundle import BundleError, load_bundle, update_card
from pose6d_ros.core.inference.estimator import (
    DEFAULT_SCORE_THRESHOLD,
    Estimator,
    EstimatorConfig,
)
from pose6d_ros.core.inference.score_calibration import (
    isotonic_fit,
    operating_point,
    ScoreCalibration,
)
from pose6d_ros.ros.pipeline import (
    FALLBACK_MIN_SCORE,
    FramePipeline,
    PipelineConfig,
    resolve_min_score,
)
from pose6d_ros.tools import cli

# --- the map ----------------------------------------------------------------------------------


def test_isotonic_fit_pools_violators_into_their_mean():
    x, y = isotonic_fit([0.1, 0.2, 0.3, 0.4, 0.5], [0, 1, 0, 0, 1])
    # 0.2-0.4 violate the order: pooled to 1/3; the ends keep their own values.
    assert x.tolist() == [0.1, 0.2, 0.4, 0.5]
    assert y.tolist() == pytest.approx([0.0, 1 / 3, 1 / 3, 1.0])
    x, y = isotonic_fit([0.7, 0.7, 0.2], [1, 0, 1])   # equal scores share one value first
    assert x.tolist() == [0.2, 0.7] and y.tolist() == pytest.approx([2 / 3, 2 / 3])


def test_the_calibration_is_monotone_and_maps_scores_to_their_empirical_precision():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.0, 1.0, 40_000)
    right = rng.random(raw.size) < raw ** 3         # a raw score that overstates precision
    calibration = ScoreCalibration.fit(raw, right)
    grid = np.linspace(-0.5, 1.5, 2001)
    assert (np.diff(calibration(grid)) >= 0).all()
    calibrated = calibration(raw)
    for low in np.arange(0.0, 1.0, 0.1):               # in every tenth of the raw range
        chosen = (raw >= low) & (raw < low + 0.1)
        assert calibrated[chosen].mean() == pytest.approx(right[chosen].mean(), abs=0.01)
    assert calibration(0.5) == pytest.approx(0.125, abs=0.03)
    assert calibrated.mean() == pytest.approx(right.mean(), abs=1e-9)  # PAV keeps the sums
    assert isinstance(calibration(0.3), float) and calibration(np.array([0.3])).shape == (1,)


def test_the_calibration_round_trips_through_the_card_and_refuses_bad_knots():
    calibration = ScoreCalibration.fit([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1])
    again = ScoreCalibration.from_dict(yaml.safe_load(yaml.safe_dump(calibration.to_dict())))
    assert np.array_equal(again.raw, calibration.raw)
    assert np.array_equal(again.precision, calibration.precision)
    for bad, message in (({'method': 'platt'}, 'method: isotonic'),
                         ({'method': 'isotonic', 'raw_scores': [0.2, 0.1],
                           'precision': [0.1, 0.2]}, 'increase strictly'),
                         ({'method': 'isotonic', 'raw_scores': [0.1, 0.2],
                           'precision': [0.5, 0.2]}, 'non-decreasing'),
                         ({'method': 'isotonic', 'raw_scores': ['a'], 'precision': [1]},
                          'lists of numbers')):
        with pytest.raises(Pose6dError, match=message):
            ScoreCalibration.from_dict(bad)


def test_the_operating_point_is_the_lowest_threshold_with_the_target_precision():
    # Calibrated scores: 0.95 (19 right of 20), 0.8 (8 of 10), 0.2 (1 of 5).
    scores = [0.95] * 20 + [0.8] * 10 + [0.2] * 5
    right = [True] * 19 + [False] + [True] * 8 + [False] * 2 + [True] + [False] * 4
    instances = [0.95] * 19 + [0.8] * 8 + [0.2] + [-np.inf] * 2       # 30 instances
    negatives = [0.95, 0.8, 0.8, -np.inf, -np.inf] + [-np.inf] * 5      # 10 negative images
    point = operating_point(scores, right, instances, negatives, target_precision=0.9)
    assert point['min_score'] == 0.8                   # 27 right of 30 kept: 0.9
    assert point['precision'] == pytest.approx(0.9) and point['estimates_kept'] == 30
    assert point['recall'] == pytest.approx(27 / 30)
    assert point['false_positive_rate'] == pytest.approx(0.3)
    strict = operating_point(scores, right, instances, negatives, target_precision=0.9,
                             max_false_positive_rate=0.1)
    assert strict['min_score'] == 0.95 and strict['false_positive_rate'] == pytest.approx(0.1)
    assert strict['recall'] == pytest.approx(19 / 30)
    with pytest.raises(Pose6dError, match='no threshold gives a precision of 0.99'):
        operating_point(scores, right, instances, negatives, target_precision=0.99)


# --- the estimator and the node take the card's threshold ------------------------------------


@pytest.fixture()
def calibrated_copy(learned_bundle, tmp_path):
    """A copy of the learned tiny bundle whose card halves every score and sets min_score."""
    path = tmp_path / 'bundle'
    shutil.copytree(learned_bundle[0], path)
    halving = ScoreCalibration(np.array([0.0, 1.0]), np.array([0.0, 0.5]))
    update_card(path, {'calibration': halving.to_dict(), 'min_score': 0.2})
    return path


def test_the_estimator_applies_the_card_calibration_and_its_default_threshold(
        learned_bundle, calibrated_copy, tiny_dataset):
    sample = BopDataset(tiny_dataset)[0]
    image = sample.load_image()
    plain = Estimator.from_bundle(learned_bundle[0], device='cpu')     # a card without them
    assert plain.calibration is None and plain.card_min_score is None
    assert plain.score_threshold == DEFAULT_SCORE_THRESHOLD            # as before
    raw = Estimator.from_bundle(learned_bundle[0], device='cpu',
                                config=EstimatorConfig(score_threshold=0.0))(image,
                                                                             sample.camera)
    assert raw and raw[0].score > 0.5
    calibrated = Estimator.from_bundle(calibrated_copy, device='cpu')
    assert calibrated.score_threshold == 0.2                           # the card's min_score
    halved = calibrated(image, sample.camera)
    assert [p.score for p in halved] == pytest.approx([p.score / 2 for p in raw
                                                       if p.score / 2 >= 0.2])
    explicit = Estimator.from_bundle(calibrated_copy, device='cpu',
                                     config=EstimatorConfig(score_threshold=0.45))
    assert explicit.score_threshold == 0.45                            # a given one wins
    uncalibrated = Estimator.from_bundle(calibrated_copy, device='cpu',
                                         config=EstimatorConfig(calibrate=False))
    # The card's min_score is a calibrated precision: it does not apply to raw scores.
    assert uncalibrated.card_min_score is None
    assert uncalibrated.score_threshold == DEFAULT_SCORE_THRESHOLD
    assert uncalibrated(image, sample.camera)[0].score == pytest.approx(raw[0].score)


def test_the_node_threshold_defaults_to_the_card_and_a_given_one_wins(calibrated_copy,
                                                                      learned_bundle):
    calibrated = Estimator.from_bundle(calibrated_copy, device='cpu')
    plain = Estimator.from_bundle(learned_bundle[0], device='cpu')
    assert PipelineConfig().min_score == -1.0                           # the model's default
    assert resolve_min_score(-1.0, calibrated) == 0.2
    assert resolve_min_score(-1.0, plain) == FALLBACK_MIN_SCORE == 0.5  # no card value: as before
    assert resolve_min_score(0.7, calibrated) == 0.7
    pipeline = FramePipeline(calibrated, PipelineConfig())
    assert pipeline.min_score == 0.2 and calibrated.score_threshold == 0.2
    assert "card's default (scores calibrated to precision)" in pipeline.describe_min_score()
    pipeline.update(min_score=0.05)       # below the card's: the estimator follows it down
    assert pipeline.min_score == 0.05 and calibrated.score_threshold == 0.05
    pipeline.update(min_score=-1.0)
    assert pipeline.min_score == 0.2
    with pytest.raises(Pose6dError, match='or -1 for the model'):
        pipeline.update(min_score=-0.5)


def test_a_bad_card_threshold_or_calibration_is_refused(calibrated_copy):
    with pytest.raises(BundleError, match='min_score must be a number in'):
        update_card(calibrated_copy, {'min_score': 1.5})
    with pytest.raises(BundleError, match='calibration.*non-decreasing'):
        update_card(calibrated_copy, {'calibration': {'method': 'isotonic',
                                                      'raw_scores': [0.0, 1.0],
                                                      'precision': [0.9, 0.1]}})
    assert load_bundle(calibrated_copy).min_score == 0.2     # unchanged by the refusals
    card = (calibrated_copy / 'card.yaml').read_text()
    card = card.replace('min_score: 0.2', 'min_score: high')
    (calibrated_copy / 'card.yaml').write_text(card)
    with pytest.raises(BundleError, match="min_score must be a number in .*'high'"):
        load_bundle(calibrated_copy)


# --- pose6d calibrate-scores and pose6d eval --update-card ------------------------------------


def test_calibrate_scores_writes_the_map_and_the_default_threshold(
        learned_bundle, tiny_dataset, tiny_negatives_dataset, tmp_path, capsys):
    """The tiny model knows its training images only: they are the positives here.

    The negative images of another set (a BOP split as --negatives) are the negatives.
    """
    bundle = tmp_path / 'bundle'
    shutil.copytree(learned_bundle[0], bundle)
    before = yaml.safe_load((bundle / 'card.yaml').read_text())
    args = ['calibrate-scores', '--model', str(bundle), '--data', str(tiny_dataset),
            '--negatives', str(tiny_negatives_dataset), '--target-precision', '0.9',
            '--device', 'cpu']
    assert cli.main(args + ['--dry-run']) == 0
    dry = capsys.readouterr().out
    assert 'dry run: the card is unchanged' in dry and 'operating point for precision 0.9' in dry
    assert yaml.safe_load((bundle / 'card.yaml').read_text()) == before
    assert cli.main(args) == 0
    assert 'written to' in capsys.readouterr().out
    card = load_bundle(bundle).card
    section, point = card['calibration'], card['calibration']['operating_point']
    assert card['min_score'] == point['min_score'] and point['precision'] >= 0.9
    assert 0.0 < point['recall'] <= 1.0 and 0.0 <= point['false_positive_rate'] <= 1.0
    positives, others = BopDataset(tiny_dataset), BopDataset(tiny_negatives_dataset)
    assert section['images'] == len(positives) and section['verdict'] == 'iou_2d'
    assert section['negative_images'] == sum(1 for s in others if not s.annotations)
    assert section['right_estimates'] > 0
    assert {k: card[k] for k in before} == before      # the rest of the card is kept
    raw = Estimator.from_bundle(bundle, device='cpu', config=EstimatorConfig(
        calibrate=False, score_threshold=0.0))
    estimator = Estimator.from_bundle(bundle, device='cpu')
    assert estimator.score_threshold == card['min_score'] and estimator.calibration is not None
    for sample in list(positives)[:4]:
        found = [p.score for p in raw(sample.load_image(), sample.camera)]
        expected = np.interp(found, section['raw_scores'], section['precision'])
        kept = [p.score for p in estimator(sample.load_image(), sample.camera)]
        assert kept == pytest.approx(sorted(expected[expected >= card['min_score']],
                                            reverse=True))
    assert cli.main(args) == 1                          # calibrated already: --force replaces
    assert 'is calibrated already; pass --force' in capsys.readouterr().err
    assert load_bundle(bundle).card == card             # a refusal changes nothing
    assert cli.main(args + ['--force', '--verdict', 'proj_2d']) == 0
    assert load_bundle(bundle).card['calibration']['verdict'] == 'proj_2d'


def test_eval_counts_false_positives_on_the_negative_images_of_a_split(
        learned_bundle, tiny_negatives_dataset, tmp_path):
    bundle = tmp_path / 'bundle'
    shutil.copytree(learned_bundle[0], bundle)
    negatives = sum(1 for s in BopDataset(tiny_negatives_dataset) if not s.annotations)
    out = tmp_path / 'eval'
    assert cli.main(['eval', '--model', str(bundle), '--data', str(tiny_negatives_dataset),
                     '--out', str(out), '--device', 'cpu', '--update-card']) == 0
    saved = json.loads((out / 'metrics.json').read_text())
    in_data = saved['false_positives_in_data']
    assert in_data['images'] == negatives and saved['instances'] > 0
    rows = (out / 'negatives.csv').read_text().splitlines()[1:]
    assert len(rows) == negatives
    highest = sorted(float(row.split(',')[1]) for row in rows)
    assert in_data['highest_score'] == pytest.approx(highest[-1], abs=1e-4)
    assert in_data['with_detection']['0.5'] == pytest.approx(
        np.mean(np.array(highest) >= 0.5))
    assert 'false_positive_curve.png' in saved['files'] and (out /
                                                             'false_positive_curve.png').is_file()
    text = (out / 'metrics.md').read_text()
    assert 'False positives' in text and 'Score curve' in text
    card = load_bundle(bundle).card            # --update-card: the figure is in the card
    entry = card['false_positives']['data/train']
    assert entry['images'] == negatives and entry['with_detection']['0.5'] == pytest.approx(
        in_data['with_detection']['0.5'], abs=1e-4)
    assert len(entry['curve']) == 21 and entry['command'].startswith('pose6d eval')
    assert not [p for p in bundle.iterdir() if p.name.startswith('.')]   # no temporary left

    # The split as --negatives: only its images without any instance of the box count.
    out = tmp_path / 'as_negatives'
    assert cli.main(['eval', '--model', str(bundle), '--negatives', str(tiny_negatives_dataset),
                     '--out', str(out), '--device', 'cpu', '--update-card']) == 0
    saved = json.loads((out / 'metrics.json').read_text())
    assert saved['false_positives']['images'] == negatives
    assert saved['false_positives']['with_detection'] == in_data['with_detection']
    assert set(load_bundle(bundle).card['false_positives']) == {'data/train', 'data'}
