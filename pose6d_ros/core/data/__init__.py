"""Data: meshes, rendering, synthetic scenes, BOP-format datasets."""
