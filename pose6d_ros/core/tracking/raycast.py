"""Object-frame surface points under image pixels: camera rays cast against the object's mesh.

The image follower finds features in the image and needs the 3D point of the object's surface
behind each one, at the track's pose. `MeshRays` casts the camera ray of every pixel against
the mesh's triangles (Moller-Trumbore) and keeps the nearest hit, which is the visible
surface: self-occlusion is handled and a pixel beside the object gets no point. Triangles are
first culled by their box in the normalised image plane, so only a few are tested per ray.

Pixels are undistorted (`CameraModel.pixels_to_normalized`), so lens distortion is honoured.
"""

from __future__ import annotations

import cv2
import numpy as np
import trimesh

from pose6d_ros.core.geometry.poses import box_keypoints

_EPS = 1e-12


class MeshRays:
    """A triangle mesh in the object frame (metres), ready for ray casts and outlines."""

    def __init__(self, vertices, faces):
        self.vertices = np.ascontiguousarray(vertices, dtype=np.float64)   # (V, 3)
        self.faces = np.ascontiguousarray(faces, dtype=np.int64)           # (T, 3)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3 or not len(self.faces):
            raise ValueError(f'a mesh needs (V, 3) vertices and (T, 3) faces; got '
                             f'{self.vertices.shape} and {self.faces.shape}')
        triangles = self.vertices[self.faces]                                # (T, 3, 3)
        self._a = triangles[:, 0]
        self._ab = triangles[:, 1] - triangles[:, 0]
        self._ac = triangles[:, 2] - triangles[:, 0]

    @classmethod
    def from_object(cls, obj):
        """The object's mesh; its keypoint box when it has no mesh file."""
        if obj.mesh_path is not None:
            mesh = obj.load_mesh()
            return cls(mesh.vertices, mesh.faces)
        corners = box_keypoints(obj.keypoints[:8].min(axis=0), obj.keypoints[:8].max(axis=0))
        box = trimesh.creation.box(extents=np.ptp(corners[:8], axis=0))
        return cls(np.asarray(box.vertices) + corners[8], box.faces)

    def outline_mask(self, pose, camera, erode_px=0):
        """uint8 mask (H, W) of the convex hull of the projected mesh, eroded by `erode_px`.

        The hull holds the silhouette; pixels of the hull beside a concave object's
        silhouette get no surface point from `surface_points`, so the hull is enough to
        search features in, at a fraction of the cost of filling every triangle.
        """
        mask = np.zeros((camera.height, camera.width), np.uint8)
        camera_points = pose.transform(self.vertices)
        in_front = camera_points[:, 2] > 1e-6
        if in_front.sum() < 3:
            return mask
        pixels = camera.project(camera_points[in_front])
        pixels = pixels[np.isfinite(pixels).all(axis=1)]
        if len(pixels) < 3:
            return mask
        limit = 4.0 * max(camera.width, camera.height)  # far-off vertices: clip, don't overflow
        hull = cv2.convexHull(np.clip(pixels, -limit, limit).astype(np.float32))
        cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 1)
        if erode_px > 0:
            kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
            mask = cv2.erode(mask, kernel)
        return mask

    def surface_points(self, pixels, pose, camera):
        """(points (N, 3) object frame, hit (N,) bool) of the surface seen at each pixel.

        points[i] is the nearest intersection of pixel i's camera ray with the mesh at
        `pose` (T_cam_obj); NaN where the ray misses the object.
        """
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        points = np.full((len(pixels), 3), np.nan)
        if not len(pixels):
            return points, np.zeros(0, bool)
        xy = camera.pixels_to_normalized(pixels)                               # (N, 2)
        R, t = pose.R, pose.t
        origin = -R.T @ t                                    # the camera centre, object frame
        directions = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ R  # R^T d, (N, 3)
        rows, tris = self._candidates(xy, pose)
        if not len(rows):
            return points, np.zeros(len(pixels), bool)
        distance = self._intersect(origin, directions[rows], tris)          # ray parameter
        ok = np.isfinite(distance)
        rows, tris, distance = rows[ok], tris[ok], distance[ok]
        best = np.full(len(pixels), np.inf)
        np.minimum.at(best, rows, distance)
        hit = np.isfinite(best)
        points[hit] = origin + directions[hit] * best[hit, None]
        return points, hit

    def _candidates(self, xy, pose):
        """(ray index, triangle index) pairs whose triangle's image-plane box holds the ray."""
        camera_vertices = pose.transform(self.vertices)
        z = camera_vertices[:, 2]
        behind = z <= 1e-6
        plane = camera_vertices[:, :2] / np.where(behind, 1.0, z)[:, None]
        corners = plane[self.faces]                                          # (T, 3, 2)
        low, high = corners.min(axis=1), corners.max(axis=1)
        always = behind[self.faces].any(axis=1)  # partly behind the camera: test it directly
        inside = ((xy[:, None, 0] >= low[None, :, 0]) & (xy[:, None, 0] <= high[None, :, 0])
                  & (xy[:, None, 1] >= low[None, :, 1]) & (xy[:, None, 1] <= high[None, :, 1]))
        inside |= always[None, :]
        return np.nonzero(inside)

    def _intersect(self, origin, directions, tris):
        """Ray parameter of each (direction, triangle) pair's hit; inf where it misses."""
        ab, ac = self._ab[tris], self._ac[tris]
        p = np.cross(directions, ac)
        det = np.einsum('ij,ij->i', ab, p)
        valid = np.abs(det) > _EPS
        inv = np.where(valid, 1.0 / np.where(valid, det, 1.0), 0.0)
        s = origin - self._a[tris]
        u = np.einsum('ij,ij->i', s, p) * inv
        q = np.cross(s, ab)
        v = np.einsum('ij,ij->i', directions, q) * inv
        distance = np.einsum('ij,ij->i', ac, q) * inv
        hit = valid & (u >= 0.0) & (v >= 0.0) & (u + v <= 1.0) & (distance > 1e-9)
        return np.where(hit, distance, np.inf)
