"""Pose from 2D-3D correspondences: EPnP/SQPnP start, RANSAC, weighted Levenberg-Marquardt.

Distortion is honoured by undistorting the 2D points once into normalised coordinates
(OpenCV's iterative inverse); every solver step then works on an ideal pinhole camera, and the
reported reprojection error is measured in real (distorted) pixels.

Degenerate input never yields a pose: `solve_pnp` returns a `PnPResult` with `success=False`
and a message saying what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from pose6d_ros.core.geometry.poses import Pose

MIN_POINTS = 4
RANSAC_MIN_POINTS = 6  # below this a single outlier cannot be told apart; solve directly
_RANSAC_FLAG = cv2.SOLVEPNP_AP3P
_EYE = np.eye(3)
_LM_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 1e-10)


@dataclass
class PnPResult:
    """Outcome of one PnP solve; R and t are None when `success` is False."""

    success: bool
    R: np.ndarray | None = None
    t: np.ndarray | None = None
    reprojection_error: float = float('inf')   # mean over inliers, pixels
    inliers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    message: str = ''
    errors: np.ndarray | None = field(default=None, repr=False)  # (N,) pixels, every point

    @property
    def max_error(self):
        """Largest reprojection error over all points (pixels)."""
        return float(self.errors.max()) if self.errors is not None else float('inf')

    @property
    def pose(self):
        """The solved T_cam_obj as a Pose (raises if the solve failed)."""
        if not self.success:
            raise ValueError(f'PnP failed: {self.message}')
        return Pose(self.R, self.t)


def solve_pnp(points_3d, points_2d, camera, weights=None, ransac=None,
              ransac_threshold_px=5.0, ransac_iterations=200, ransac_confidence=0.999,
              refine=True):
    """Solve T_cam_obj from object points (N, 3, metres) and their pixels (N, 2).

    weights: optional per-point confidence (N,) >= 0, used by the refinement.
    ransac: None = automatic (on when there are at least 6 points), True or False to force.
    """
    points_3d = np.asarray(points_3d, dtype=np.float64)
    points_2d = np.asarray(points_2d, dtype=np.float64)
    problem = _check_input(points_3d, points_2d, weights)
    if problem:
        return PnPResult(False, message=problem)
    n = len(points_3d)
    weighted = weights is not None and np.ptp(weights) > 0.0
    weights = np.asarray(weights, dtype=np.float64).ravel() if weighted else None
    xy = camera.pixels_to_normalized(points_2d)  # (N, 2) undistorted rays
    use_ransac = n >= RANSAC_MIN_POINTS if ransac is None else bool(ransac) and n > MIN_POINTS

    # Try the all-inlier hypothesis first: with clean keypoints it is right and RANSAC is skipped.
    all_points = np.arange(n)
    rvec, t = _direct(points_3d, xy)
    if rvec is not None:
        result = _finish(points_3d, points_2d, xy, camera, rvec, t, all_points, weights, refine)
        if not use_ransac or (result.success and result.max_error < ransac_threshold_px):
            return result
    elif not use_ransac:
        return PnPResult(False, message='the PnP solver found no pose for these points')

    threshold = ransac_threshold_px / np.sqrt(camera.fx * camera.fy)
    rvec, t, inliers = _ransac(points_3d, xy, threshold, ransac_iterations, ransac_confidence)
    if rvec is None:
        return PnPResult(False, message=f'RANSAC found no pose consistent with {MIN_POINTS} '
                                        f'or more of the {n} points')
    result = _finish(points_3d, points_2d, xy, camera, rvec, t, inliers, weights, refine)
    if not result.success:
        return result
    # Final inlier set, measured with the refined pose in real pixels.
    inliers = np.flatnonzero(result.errors < ransac_threshold_px)
    if len(inliers) < MIN_POINTS:
        return PnPResult(False, message=f'only {len(inliers)} of {n} points agree with the '
                                        f'refined pose (need {MIN_POINTS})')
    result.inliers = inliers
    result.reprojection_error = float(result.errors[inliers].mean())
    return result


def _finish(points_3d, points_2d, xy, camera, rvec, t, inliers, weights, refine):
    """Refine a pose on its inliers and measure it in real pixels."""
    rvec, t = rvec.reshape(3, 1), t.reshape(3, 1)
    if refine and weights is None:  # unweighted: OpenCV's LM minimises the same cost, in C++
        try:
            rvec, t = cv2.solvePnPRefineLM(points_3d[inliers], xy[inliers], _EYE, None, rvec, t,
                                           _LM_CRITERIA)
        except cv2.error:
            pass  # keep the unrefined pose; it is checked and measured below
    R = cv2.Rodrigues(rvec)[0]
    t = t.ravel()
    if refine and weights is not None:
        R, t = refine_lm(points_3d[inliers], xy[inliers], R, t, weights[inliers])
        rvec = cv2.Rodrigues(R)[0]
    if not (np.isfinite(R).all() and np.isfinite(t).all()):
        return PnPResult(False, message='the PnP solution is not finite')
    if (points_3d[inliers] @ R[2] + t[2]).min() <= 0.0:
        return PnPResult(False, message='the PnP solution puts points behind the camera')
    projected = cv2.projectPoints(points_3d, rvec, t, camera.K, camera.D if camera.has_distortion
                                  else None)[0].reshape(-1, 2)
    errors = np.sqrt(((projected - points_2d) ** 2).sum(axis=1))
    return PnPResult(True, R, t, float(errors[inliers].mean()), inliers, 'ok', errors)


def refine_lm(points_3d, xy, R, t, weights=None, iterations=5):
    """Weighted Levenberg-Marquardt on normalised-coordinate residuals; returns (R, t)."""
    sqrt_w = np.sqrt(np.ones(len(points_3d)) if weights is None else np.clip(weights, 0.0, None))
    R, t = R.copy(), np.asarray(t, dtype=np.float64).ravel().copy()
    residual, J = _residual_and_jacobian(points_3d, xy, R, t, sqrt_w)
    if residual is None:
        return R, t
    cost = residual @ residual
    lam = 1e-4
    for _ in range(iterations):
        JtJ, Jtr = J.T @ J, J.T @ residual
        if np.abs(Jtr).max() < 1e-14:
            break  # at a stationary point
        improved = False
        while lam < 1e6:
            try:
                delta = -np.linalg.solve(JtJ + lam * np.diag(np.diag(JtJ) + 1e-12), Jtr)
            except np.linalg.LinAlgError:
                return R, t
            R_new = cv2.Rodrigues(delta[:3])[0] @ R
            t_new = t + delta[3:]
            new_residual, new_J = _residual_and_jacobian(points_3d, xy, R_new, t_new, sqrt_w)
            new_cost = np.inf if new_residual is None else new_residual @ new_residual
            if new_cost < cost:
                converged = cost - new_cost < 1e-8 * cost
                R, t, residual, J, cost = R_new, t_new, new_residual, new_J, new_cost
                lam = max(lam * 0.1, 1e-9)
                improved = True
                break
            lam *= 10.0
        if not improved or converged:
            break
    return R, t


def _residual_and_jacobian(points_3d, xy, R, t, sqrt_w):
    """Weighted residuals (2N,) of the pinhole projection and their Jacobian (2N, 6).

    Parameters are a left rotation increment (axis-angle) and a translation increment:
    dp/d(rotation) = -[R X]x, dp/dt = I, with p = R X + t.
    """
    rotated = points_3d @ R.T
    p = rotated + t
    z = p[:, 2]
    if np.any(z <= 1e-9):
        return None, None
    inv_z = 1.0 / z
    u, v = p[:, 0] * inv_z, p[:, 1] * inv_z
    residual = np.empty(2 * len(p))
    residual[0::2] = (u - xy[:, 0]) * sqrt_w
    residual[1::2] = (v - xy[:, 1]) * sqrt_w
    a, b, c = rotated[:, 0], rotated[:, 1], rotated[:, 2]
    J = np.empty((len(p), 2, 6))
    # (du, dv)/dp = [[1/z, 0, -u/z], [0, 1/z, -v/z]], times [-[R X]x | I].
    J[:, 0, 0] = -u * b * inv_z
    J[:, 0, 1] = (c + u * a) * inv_z
    J[:, 0, 2] = -b * inv_z
    J[:, 0, 3] = inv_z
    J[:, 0, 4] = 0.0
    J[:, 0, 5] = -u * inv_z
    J[:, 1, 0] = -(c + v * b) * inv_z
    J[:, 1, 1] = v * a * inv_z
    J[:, 1, 2] = a * inv_z
    J[:, 1, 3] = 0.0
    J[:, 1, 4] = inv_z
    J[:, 1, 5] = -v * inv_z
    J *= sqrt_w[:, None, None]
    return residual, J.reshape(-1, 6)


def _direct(points_3d, xy):
    """Globally optimal SQPnP; EPnP where SQPnP refuses.

    SQPnP's point-spread check is absolute, so it asserts on objects of a few millimetres, or
    on near-degenerate inlier subsets.
    """
    for flag in (cv2.SOLVEPNP_SQPNP, cv2.SOLVEPNP_EPNP):
        try:
            ok, rvec, tvec = cv2.solvePnP(points_3d, xy, _EYE, None, flags=flag)
        except cv2.error:
            continue
        if ok and np.isfinite(rvec).all() and np.isfinite(tvec).all():
            return rvec.ravel(), tvec.ravel()
    return None, None


def _ransac(points_3d, xy, threshold, iterations, confidence):
    try:
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            points_3d, xy, _EYE, None, iterationsCount=iterations,
            reprojectionError=threshold, confidence=confidence, flags=_RANSAC_FLAG)
    except cv2.error:  # OpenCV asserts on some degenerate samples instead of failing
        return None, None, None
    if not ok or inliers is None or len(inliers) < MIN_POINTS:
        return None, None, None
    inliers = np.sort(inliers.ravel())
    # Re-solve on the inliers with the globally optimal solver: EPnP on few points can be rough.
    rvec_all, t_all = _direct(points_3d[inliers], xy[inliers])
    if rvec_all is not None:
        rvec, tvec = rvec_all, t_all
    return np.ravel(rvec), np.ravel(tvec), inliers


def _check_input(points_3d, points_2d, weights):
    if points_3d.ndim != 2 or points_3d.shape[1] != 3:
        return f'3D points must have shape (N, 3); got {points_3d.shape}'
    if points_2d.ndim != 2 or points_2d.shape[1] != 2:
        return f'2D points must have shape (N, 2); got {points_2d.shape}'
    if len(points_3d) != len(points_2d):
        return f'got {len(points_3d)} 3D points but {len(points_2d)} 2D points; expected pairs'
    if len(points_3d) < MIN_POINTS:
        return f'PnP needs at least {MIN_POINTS} points; got {len(points_3d)}'
    if not (np.isfinite(points_3d).all() and np.isfinite(points_2d).all()):
        return 'points contain NaN or infinite values'
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if weights.shape != (len(points_3d),) or not np.isfinite(weights).all() or (
                weights < 0).any():
            return f'weights must be {len(points_3d)} finite non-negative numbers'
    if _is_degenerate(points_3d):
        return 'the 3D points are collinear (or coincide); a pose needs points spread in 2D or 3D'
    if _is_degenerate(points_2d):
        return 'the 2D points are collinear (or coincide); the pose is not determined'
    return ''


def _is_degenerate(points, rel_tol=1e-10):
    """True when points (N, 2 or 3) coincide or lie on one line (second moment ~ rank < 2)."""
    centred = points - points.mean(axis=0)
    C = (centred.T @ centred).tolist()
    trace = sum(C[i][i] for i in range(len(C)))
    if trace <= 1e-24:
        return True
    # Sum of the 2x2 principal minors = sum of eigenvalue pairs; ~0 iff only one is non-zero.
    minors = sum(C[i][i] * C[j][j] - C[i][j] * C[j][i]
                 for i in range(len(C)) for j in range(i + 1, len(C)))
    return minors <= rel_tol * trace * trace
