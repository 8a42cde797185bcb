"""Benchmarks (`pose6d bench ...`): speed measured by a command with JSON out, never by a test."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from pose6d_ros.core.camera import CameraModel
from pose6d_ros.core.geometry import box_keypoints, Pose, random_rotation
from pose6d_ros.core.pnp import solve_pnp


def machine_info():
    """What the figures were measured on."""
    import cv2

    return {
        'machine': platform.machine(),
        'processor': platform.processor() or platform.machine(),
        'cpu_count': os.cpu_count(),
        'python': platform.python_version(),
        'numpy': np.__version__,
        'opencv': cv2.__version__,
    }


def bench_pnp(trials=2000, seed=0, threads=1):
    """Microseconds per PnP solve for 9 keypoints (RANSAC + refinement), on `threads` CPU threads.

    Three cases: clean keypoints (1 px noise; the usual case), the same with per-point
    weights (the keypoints network passes peak confidences), and with 2 of 9 gross outliers.
    """
    import cv2

    previous_threads = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        rng = np.random.default_rng(seed)
        camera = CameraModel.from_intrinsics(572.4, 573.6, 325.3, 242.0, 640, 480,
                                             D=[-0.1, 0.05, 0.001, -0.001, 0.0])
        keypoints = box_keypoints([-0.05, -0.04, -0.06], [0.05, 0.04, 0.06])
        cases = {'clean': {}, 'weighted': {}, 'outliers_2_of_9': {}}
        problems = []
        for _ in range(trials):
            pose = Pose(random_rotation(rng), rng.uniform([-0.1, -0.1, 0.4], [0.1, 0.1, 0.8]))
            pixels = camera.project(pose.transform(keypoints)) + rng.normal(0.0, 1.0, (9, 2))
            outliers = pixels.copy()
            bad = rng.choice(9, 2, replace=False)
            outliers[bad] += rng.uniform(30, 100, (2, 2)) * rng.choice([-1, 1], (2, 2))
            problems.append((pixels, outliers, rng.uniform(0.3, 1.0, 9)))
        for name in cases:
            times, successes = [], 0
            for pixels, outliers, weights in problems:
                start = time.perf_counter()
                if name == 'clean':
                    result = solve_pnp(keypoints, pixels, camera)
                elif name == 'weighted':
                    result = solve_pnp(keypoints, pixels, camera, weights=weights)
                else:
                    result = solve_pnp(keypoints, outliers, camera)
                times.append(time.perf_counter() - start)
                successes += result.success
            times_us = np.asarray(times[len(times) // 10:]) * 1e6  # first 10% are warm-up
            cases[name] = {
                'us_per_solve_median': round(float(np.median(times_us)), 1),
                'us_per_solve_mean': round(float(times_us.mean()), 1),
                'us_per_solve_p95': round(float(np.percentile(times_us, 95)), 1),
                'success_rate': successes / len(problems),
            }
    finally:
        cv2.setNumThreads(previous_threads)
    return {
        'benchmark': 'pnp',
        'points': 9,
        'ransac': True,
        'refine': True,
        'threads': threads,
        'trials': trials,
        'target_us': 300,
        'cases': cases,
        'machine': machine_info(),
    }
