"""Copies of object meshes small enough to travel inside a model bundle.

A bundle carries its meshes so that it still loads, draws and scores after it is copied to a
robot. A mesh file under the size limit is copied as it is (an OBJ with its material and
texture); a larger one is written as a binary PLY in metres, and, if that is still too large,
simplified by vertex clustering (vertices merged on a regular grid, the grid coarsened until
the file fits): the copy is for RViz markers and metrics, where a millimetre of detail does not
matter.
"""

from __future__ import annotations

from pathlib import Path
import shutil

import numpy as np
import trimesh

# Each mesh in a bundle is at most this large (bundles in models/ stay under ~20 MB in all).
MAX_MESH_BYTES = 4 * 1024 * 1024


def copy_mesh(obj, folder, max_bytes=MAX_MESH_BYTES):
    """Copy obj's mesh into `folder`; returns (path of the copy, its scale, simplified or not).

    The copy is the file itself (with an OBJ's companions) when it is at most `max_bytes`,
    else a binary PLY in metres (scale 1), simplified by vertex clustering if needed.
    """
    source = Path(obj.mesh_path)
    folder = Path(folder)
    companions = mesh_companions(source)
    if source.stat().st_size + sum(p.stat().st_size for p in companions) <= max_bytes:
        for path in [source] + companions:
            shutil.copy2(path, folder / path.name)
        return folder / source.name, obj.scale, False
    mesh = obj.load_mesh().copy()
    if getattr(mesh.visual, 'kind', None) == 'texture':
        mesh.visual = mesh.visual.to_color()  # a PLY keeps colours per vertex
    target = folder / f'{source.stem}.ply'
    data = mesh.export(file_type='ply', encoding='binary')
    simplified = False
    cell = float(obj.diameter) / 400.0
    while len(data) > max_bytes:
        mesh = cluster_vertices(mesh, cell)
        data = mesh.export(file_type='ply', encoding='binary')
        simplified, cell = True, cell * 1.5
    target.write_bytes(data)
    return target, 1.0, simplified


def cluster_vertices(mesh, cell):
    """A simpler mesh: vertices within one grid cell of side `cell` merged into their mean.

    Faces that collapse are dropped; vertex colours are averaged like the positions.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    keys = np.floor(vertices / cell).astype(np.int64)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    counts = np.bincount(inverse).astype(np.float64)[:, None]
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, inverse, vertices)
    merged /= counts
    faces = inverse[np.asarray(mesh.faces)]
    keep = ((faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])
            & (faces[:, 0] != faces[:, 2]))
    faces = faces[keep]
    colours = None
    vertex_colors = getattr(mesh.visual, 'vertex_colors', None)
    if getattr(mesh.visual, 'kind', None) == 'vertex' and vertex_colors is not None:
        summed = np.zeros((len(counts), vertex_colors.shape[1]))
        np.add.at(summed, inverse, vertex_colors.astype(np.float64))
        colours = np.clip(np.round(summed / counts), 0, 255).astype(np.uint8)
    return trimesh.Trimesh(merged, faces, vertex_colors=colours, process=False)


def mesh_companions(mesh_path):
    """Files an OBJ mesh needs beside it: its material libraries and their texture images."""
    mesh_path = Path(mesh_path)
    if mesh_path.suffix.lower() != '.obj':
        return []
    found = []
    for line in mesh_path.read_text(errors='replace').splitlines():
        if line.startswith('mtllib '):
            material = mesh_path.parent / line.split(maxsplit=1)[1].strip()
            if material.is_file():
                found.append(material)
                for entry in material.read_text(errors='replace').splitlines():
                    parts = entry.split()
                    if parts and parts[0].startswith('map_') and len(parts) > 1:
                        texture = material.parent / parts[-1]
                        if texture.is_file():
                            found.append(texture)
    return found
