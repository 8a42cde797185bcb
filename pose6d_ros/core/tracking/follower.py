"""Follow an object in the image between network runs: KLT features, then PnP.

`seed_features` picks corners (`cv2.goodFeaturesToTrack`) inside the object's projected
outline at the track's pose and takes their 3D points on the mesh by ray casting
(raycast.py): a 2D-3D correspondence per feature. `follow` moves the features into the next
image with pyramidal Lucas-Kanade (`cv2.calcOpticalFlowPyrLK`), keeps those that track back to
where they started (the forward-backward check), and solves the pose from the survivors with
`solve_pnp` (RANSAC, distortion included). Outliers are dropped from the set, so a feature
that slid onto an occluder does not come back.

Both work on a window of the image around the object, so the cost grows with the object's
size in the image, not the image's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from pose6d_ros.core.geometry.pnp import solve_pnp


@dataclass(frozen=True)
class FollowerConfig:
    """Feature and KLT settings (pixels of the camera image)."""

    max_features: int = 50          # corners seeded per object
    min_features: int = 8           # fewer surviving features: the object is lost
    corner_quality: float = 0.01    # goodFeaturesToTrack's qualityLevel
    min_spacing_px: int = 5         # between two corners
    edge_margin_px: int = 3         # corners this far inside the outline (not on its edge)
    window_px: int = 15             # KLT window side
    pyramid_levels: int = 2         # KLT pyramid levels above the image (the prediction
    #                                 starts the search, so 4x coarser is enough)
    max_backtrack_px: float = 1.0   # forward-then-backward KLT must return this close (0: off)
    ransac_px: float = 3.0          # PnP inlier threshold


@dataclass(frozen=True)
class FeatureSet:
    """One object's features: where they are in the last image, and their object points."""

    pixels: np.ndarray   # (N, 2) float32, camera pixels in the last image
    points: np.ndarray   # (N, 3) object frame, metres
    pose: object         # T_cam_obj the features were last fitted with
    seeded: int          # how many there were when seeded (quality is relative to it)

    def __len__(self):
        return len(self.pixels)


@dataclass(frozen=True)
class FollowResult:
    """A pose measured by following the features, or why none was."""

    success: bool
    features: FeatureSet | None = None   # the survivors, at their new pixels
    pose: object = None                  # T_cam_obj from PnP
    reprojection_error: float = float('inf')
    quality: float = 0.0                 # in [0, 1]: survivors' share, less for a poor fit
    message: str = ''


def to_gray(image_rgb):
    """The grey image KLT and the corner detector work on."""
    return cv2.cvtColor(np.asarray(image_rgb), cv2.COLOR_RGB2GRAY)


def seed_features(gray, camera, pose, mesh, config=None, exclude=None):
    """Features of an object at `pose` in `gray`; None when too few are found.

    mesh: the object's `MeshRays`; exclude: an optional uint8 mask (H, W) of pixels that
    belong to something else (nearer objects): no feature is taken there.
    """
    config = config or FollowerConfig()
    mask = mesh.outline_mask(pose, camera, config.edge_margin_px)
    if exclude is not None:
        mask[exclude > 0] = 0
    box = _mask_box(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    corners = cv2.goodFeaturesToTrack(gray[y0:y1, x0:x1], config.max_features,
                                      config.corner_quality, config.min_spacing_px,
                                      mask=mask[y0:y1, x0:x1])
    if corners is None:
        return None
    pixels = corners.reshape(-1, 2).astype(np.float64) + (x0, y0)
    points, hit = mesh.surface_points(pixels, pose, camera)
    if hit.sum() < config.min_features:
        return None
    return FeatureSet(pixels[hit].astype(np.float32), points[hit], pose, int(hit.sum()))


def follow(features, gray_before, gray_now, camera, predicted, config=None):
    """Move `features` from `gray_before` into `gray_now` and solve the pose there.

    predicted: the track's pose predicted for the new image; the features start the search
    where that motion would take them, so fast motion is found on the fine levels.
    """
    config = config or FollowerConfig()
    before = features.pixels.astype(np.float64)
    guess = before + (camera.project(predicted.transform(features.points))
                      - camera.project(features.pose.transform(features.points)))
    guess = np.where(np.isfinite(guess), guess, before)
    height, width = gray_now.shape[:2]
    margin = config.window_px * (2 ** config.pyramid_levels) // 2 + 2
    both = np.concatenate([before, guess])
    x0, y0 = np.maximum(np.floor(both.min(axis=0)) - margin, 0).astype(int)
    x1, y1 = np.minimum(np.ceil(both.max(axis=0)) + margin + 1, (width, height)).astype(int)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return FollowResult(False, message='the features left the image')
    offset = np.array([x0, y0], dtype=np.float32)
    crop_before = np.ascontiguousarray(gray_before[y0:y1, x0:x1])
    crop_now = _matched_gain(gray_now[y0:y1, x0:x1], crop_before)
    start = (before - offset).astype(np.float32)
    window = (config.window_px, config.window_px)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(
        crop_before, crop_now, start, (guess - offset).astype(np.float32), winSize=window,
        maxLevel=config.pyramid_levels, criteria=criteria,
        flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    good = status.ravel() == 1
    if config.max_backtrack_px > 0:
        back, back_status, _ = cv2.calcOpticalFlowPyrLK(
            crop_now, crop_before, moved, start.copy(), winSize=window,
            maxLevel=config.pyramid_levels, criteria=criteria,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        good &= ((back_status.ravel() == 1)
                 & (np.linalg.norm(back - start, axis=1) < config.max_backtrack_px))
    moved = moved.astype(np.float64) + offset
    inside = ((moved[:, 0] >= -0.5) & (moved[:, 0] <= width - 0.5)
              & (moved[:, 1] >= -0.5) & (moved[:, 1] <= height - 0.5))
    good &= inside
    if good.sum() < config.min_features:
        return FollowResult(False, message=f'{int(good.sum())} of {len(features)} features '
                                           'followed')
    fit = solve_pnp(features.points[good], moved[good], camera, ransac=True,
                    ransac_threshold_px=config.ransac_px)
    if not fit.success or len(fit.inliers) < config.min_features:
        return FollowResult(False, message=f'PnP on the followed features: {fit.message}')
    kept = np.flatnonzero(good)[fit.inliers]
    survivors = replace(features, pixels=moved[kept].astype(np.float32),
                        points=features.points[kept], pose=fit.pose)
    # Half the seeded features kept is a full set: KLT sheds some on every frame
    # (noise, corners that change with the view) without the pose getting worse.
    share = min(1.0, 2.0 * len(kept) / max(features.seeded, 1))
    fit_quality = max(0.0, 1.0 - fit.reprojection_error / config.ransac_px)
    return FollowResult(True, survivors, fit.pose, fit.reprojection_error,
                        float(share * (0.5 + 0.5 * fit_quality)), 'ok')


def _matched_gain(image, reference):
    """`image` with the mean and contrast of `reference` (uint8).

    KLT assumes a point keeps its brightness; auto-exposure and flicker change the whole
    window at once, which a gain and an offset undo.
    """
    mean, std = cv2.meanStdDev(image)
    ref_mean, ref_std = cv2.meanStdDev(reference)
    gain = float(ref_std[0, 0]) / max(float(std[0, 0]), 1e-3)
    return cv2.convertScaleAbs(image, alpha=gain, beta=float(ref_mean[0, 0]) - gain * float(
        mean[0, 0]))


def _mask_box(mask):
    """(x0, y0, x1, y1) bounding the mask's pixels (exclusive end), or None when empty."""
    columns = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(columns) or not len(rows):
        return None
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1
