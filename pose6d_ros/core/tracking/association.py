"""Which instance of this frame is which track: optimal assignment per object class.

The cost of pairing a track with an instance of its object is the distance between the
instance's position and the track's position predicted at the frame's stamp, plus the
rotation angle between them up to the object's symmetries, each divided by a scale:
`cost = distance / max_distance + angle / angle_scale`. Pairs farther apart than
`max_distance` are never made (the instance starts a new track instead). The assignment that
minimises the summed cost over all pairs is scipy's `linear_sum_assignment`, so two objects
of the same kind that cross keep their identities when the prediction separates them better
than the nearest-first greedy choice would.
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from pose6d_ros.core.tracking.symmetry import symmetric_angle

_INFEASIBLE = 1e6  # a cost no allowed pair reaches (each term is at most a few units)


@dataclass(frozen=True)
class Association:
    """The outcome: (track index, instance index) pairs, and what was left unpaired."""

    matches: list
    unmatched_tracks: list
    unmatched_instances: list


def pair_cost(predicted, measured, symmetries, max_distance, angle_scale):
    """The cost of pairing a predicted pose with a measured one, or None beyond the gate."""
    distance = float(np.linalg.norm(measured.t - predicted.t))
    if distance > max_distance:
        return None
    return distance / max_distance + symmetric_angle(measured, predicted, symmetries) / angle_scale


def associate(track_classes, predicted, instance_classes, measured, symmetries_of,
              max_distance, angle_scale=math.pi):
    """Pair tracks with instances of the same class.

    track_classes / instance_classes: class id of each track / instance; predicted /
    measured: their Poses (T_cam_obj); symmetries_of: class id -> Symmetries;
    max_distance: metres beyond which a pair is never made; angle_scale: radians that weigh
    as much as `max_distance`.
    """
    matches, unmatched_tracks, unmatched_instances = [], [], []
    for class_id in sorted(set(track_classes) | set(instance_classes)):
        tracks = [i for i, c in enumerate(track_classes) if c == class_id]
        instances = [j for j, c in enumerate(instance_classes) if c == class_id]
        if not tracks or not instances:
            unmatched_tracks += tracks
            unmatched_instances += instances
            continue
        cost = np.full((len(tracks), len(instances)), _INFEASIBLE)
        for a, i in enumerate(tracks):
            for b, j in enumerate(instances):
                value = pair_cost(predicted[i], measured[j], symmetries_of(class_id),
                                  max_distance, angle_scale)
                if value is not None:
                    cost[a, b] = value
        rows, cols = linear_sum_assignment(cost)
        paired_tracks, paired_instances = set(), set()
        for a, b in zip(rows, cols):
            if cost[a, b] < _INFEASIBLE:
                matches.append((tracks[a], instances[b]))
                paired_tracks.add(a)
                paired_instances.add(b)
        unmatched_tracks += [i for a, i in enumerate(tracks) if a not in paired_tracks]
        unmatched_instances += [j for b, j in enumerate(instances) if b not in paired_instances]
    return Association(sorted(matches), sorted(unmatched_tracks), sorted(unmatched_instances))
