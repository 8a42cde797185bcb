"""Geometry: cameras, poses, object models, PnP, metrics, results and drawing (no torch)."""
