"""Calibrated scores: a network's raw detection score -> the precision measured at that score.

A raw score (HRPose's mean keypoint belief times the found fraction, the corners network's
softmax) ranks detections but says nothing about how often one at that score is right: the
bundled demo model put a phantom box on a fifth of photographs without it at 0.5. The map is
fitted on an evaluation of a held-out split that includes images without the objects: every
estimate is a pair (raw score, right or wrong), and the map gives, for a raw score, the share
of right estimates among those scored like it. A calibrated score of 0.99 then means that 99
in 100 such estimates were right, and a threshold on it is a known precision.

The fit is isotonic regression (pool adjacent violators), in numpy: the one assumption it
makes is the one a score must satisfy, that a higher raw score is never less likely to be
right. Platt scaling (a logistic curve in the raw score) assumes a shape, and neither
decoder's score has a reason to follow one: HRPose's is a product of a belief mean and a
fraction, and a logistic fit puts its error where there are few estimates, at the top, which
is where a threshold of 0.99 is chosen. The map is stored as knots (raw, precision) and
applied by linear interpolation between them (constant beyond the ends), so it stays monotone.

`operating_point` picks the model's default threshold: the lowest calibrated score at which
the estimates kept are right at least `target_precision` of the time (and, when asked, at
most `max_false_positive_rate` of the images without objects have a detection), with the
recall it keeps. What precision means depends on the share of images without objects in the
calibration data; the false-positive rate (per negative image) does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pose6d_ros.core.errors import Pose6dError

METHOD = 'isotonic'


def isotonic_fit(scores, correct):
    """Pool adjacent violators: the non-decreasing steps closest to `correct` (least squares).

    Returns (x, y): each step's lowest and highest score with its value (one
    knot where a step holds one score), x strictly increasing, y non-decreasing.

    scores: (N,) raw scores; correct: (N,) bools (or weights in [0, 1]). Equal scores are
    pooled first: their mean is the only value a function of the score can give them.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=np.float64).reshape(-1)
    if scores.size == 0 or scores.size != correct.size:
        raise ValueError(f'need as many verdicts as scores, at least one; got {scores.size} '
                         f'scores and {correct.size} verdicts')
    if not np.isfinite(scores).all():
        raise ValueError('scores must be finite')
    unique, inverse = np.unique(scores, return_inverse=True)
    counts = np.bincount(inverse).astype(np.float64)
    sums = np.bincount(inverse, weights=correct)
    # Blocks of consecutive unique scores: value = sum / count, merged while they decrease.
    block_sum, block_count, block_low, block_high = [], [], [], []
    for i in range(unique.size):
        block_sum.append(sums[i])
        block_count.append(counts[i])
        block_low.append(unique[i])
        block_high.append(unique[i])
        while (len(block_sum) > 1 and block_sum[-2] / block_count[-2]
               >= block_sum[-1] / block_count[-1]):
            total, count, high = block_sum.pop(), block_count.pop(), block_high.pop()
            block_low.pop()
            block_sum[-1] += total
            block_count[-1] += count
            block_high[-1] = high
    x, y = [], []
    for total, count, low, high in zip(block_sum, block_count, block_low, block_high):
        value = total / count
        x.append(low)
        y.append(value)
        if high > low:
            x.append(high)
            y.append(value)
    return np.array(x), np.array(y)


@dataclass(frozen=True)
class ScoreCalibration:
    """A monotone map raw score -> precision, by its knots (see the module docstring)."""

    raw: np.ndarray          # (K,) strictly increasing raw scores
    precision: np.ndarray    # (K,) non-decreasing precision in [0, 1] at each

    def __post_init__(self):
        raw = np.asarray(self.raw, dtype=np.float64).reshape(-1)
        precision = np.asarray(self.precision, dtype=np.float64).reshape(-1)
        if raw.size == 0 or raw.size != precision.size:
            raise Pose6dError(f'calibration needs as many precision values as raw scores, at '
                              f'least one; got {raw.size} and {precision.size}')
        if not (np.isfinite(raw).all() and np.isfinite(precision).all()):
            raise Pose6dError('calibration knots must be finite numbers')
        if (np.diff(raw) <= 0).any():
            raise Pose6dError('calibration raw scores must increase strictly')
        if (np.diff(precision) < 0).any() or precision.min() < 0 or precision.max() > 1:
            raise Pose6dError('calibration precision must be non-decreasing within [0, 1]')
        object.__setattr__(self, 'raw', raw)
        object.__setattr__(self, 'precision', precision)

    def __call__(self, scores):
        """Calibrated score(s): a float for a number, an array for an array."""
        mapped = np.interp(scores, self.raw, self.precision)
        return float(mapped) if np.ndim(mapped) == 0 else mapped

    @classmethod
    def fit(cls, scores, correct):
        """The isotonic map of raw scores to the share of right estimates among them."""
        return cls(*isotonic_fit(scores, correct))

    def to_dict(self):
        """The knots as plain lists (the card's `calibration:` section adds the rest)."""
        return {'method': METHOD, 'raw_scores': [float(v) for v in self.raw],
                'precision': [float(v) for v in self.precision]}

    @classmethod
    def from_dict(cls, data, where='calibration'):
        """Read what `to_dict` wrote; a Pose6dError naming `where` when it is not that."""
        if not isinstance(data, dict) or data.get('method') != METHOD:
            raise Pose6dError(f'{where} must be a mapping with method: {METHOD}, raw_scores and '
                              f'precision lists; got {data!r:.80}')
        try:
            raw = np.asarray(data.get('raw_scores'), dtype=np.float64)
            precision = np.asarray(data.get('precision'), dtype=np.float64)
        except (TypeError, ValueError):
            raise Pose6dError(f'{where}: raw_scores and precision must be lists of '
                              'numbers') from None
        try:
            return cls(raw, precision)
        except Pose6dError as exc:
            raise Pose6dError(f'{where}: {exc}') from None


def operating_point(scores, correct, instance_scores, negative_scores,
                    target_precision=0.99, max_false_positive_rate=None):
    """The lowest threshold on `scores` that keeps precision >= target, with what it keeps.

    With max_false_positive_rate, the false-positive rate stays <= it too.

    scores, correct: every estimate (calibrated score, right or not), those on negative images
    included. instance_scores: per ground-truth instance, the score of its right estimate
    (-inf when it has none): recall = share of them at or above the threshold.
    negative_scores: per image without objects, its highest score (0 without a detection).
    Precision and the rate are those of everything at or above a threshold; the threshold is
    the lowest at which they, and those of every higher threshold, meet the targets.
    Returns {'min_score', 'precision', 'recall', 'false_positive_rate', 'estimates_kept',
    'target_precision', 'max_false_positive_rate'}; Pose6dError when no threshold meets them.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    instances = np.asarray(instance_scores, dtype=np.float64).reshape(-1)
    negatives = np.asarray(negative_scores, dtype=np.float64).reshape(-1)
    if not scores.size:
        raise Pose6dError('no estimates to choose a threshold from: the model found nothing '
                          'in the calibration data')
    order = np.argsort(-scores, kind='stable')
    sorted_scores, right = scores[order], np.cumsum(correct[order])
    best, chosen = None, None
    for threshold in np.unique(scores)[::-1]:       # from the top down
        kept = int(np.searchsorted(-sorted_scores, -threshold, side='right'))
        precision = right[kept - 1] / kept
        rate = float(np.mean(negatives >= threshold)) if negatives.size else None
        if best is None or precision > best[1]:
            best = (threshold, precision)
        if precision < target_precision or (max_false_positive_rate is not None and rate
                                            is not None and rate > max_false_positive_rate):
            break
        chosen = {'min_score': float(threshold), 'precision': float(precision),
                  'recall': float(np.mean(instances >= threshold)) if instances.size else None,
                  'false_positive_rate': rate, 'estimates_kept': kept}
    if chosen is None:
        limit = (f' and at most {max_false_positive_rate:g} of the negative images with a '
                 'detection' if max_false_positive_rate is not None else '')
        raise Pose6dError(f'no threshold gives a precision of {target_precision:g}{limit}: '
                          f'at the highest score ({best[0]:.4g}) it is {best[1]:.4g}; ask '
                          'for less, or calibrate on more (or other) data')
    return {**chosen, 'target_precision': float(target_precision),
            'max_false_positive_rate': (None if max_false_positive_rate is None
                                        else float(max_false_positive_rate))}
