"""Tracking between the estimator and the outputs: identities, SE(3) filtering, image following.

symmetry.py     the symmetric equivalent of a pose closest to another one
se3_filter.py   a constant-velocity error-state Kalman filter on position and rotation
association.py  frame instances to tracks: optimal assignment on position and rotation
raycast.py      object-frame surface points under pixels (rays against the mesh)
follower.py     KLT on features inside the projected silhouette, then PnP
tracker.py      the tracker that combines them (what the node and the bag tool run)
"""
