"""Shared fixtures: a tiny synthetic dataset of one coloured box, made once per test session."""

import os
from pathlib import Path

import numpy as np
import pytest
import trimesh

FACE_COLOURS = [(220, 40, 40), (40, 200, 60), (40, 70, 220), (230, 210, 40), (200, 60, 200),
                (40, 200, 210)]

# The node and launch tests talk over DDS. In the default domain (0) they would hear, and be
# heard by, any other ROS 2 process on this machine: another test run, a robot's own nodes
# (images with other stamps reaching the node under test made a tracking test fail). Each test
# run takes a domain of its own unless the caller chose one; rclpy and the processes launched
# by the launch tests read it from here.
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))


def coloured_box(extents=(0.06, 0.05, 0.04)):
    """A box whose six faces have six different colours, so its pose is unambiguous."""
    box = trimesh.creation.box(extents=extents).subdivide().subdivide()
    face_normals = box.face_normals
    axis = np.abs(face_normals).argmax(axis=1)
    side = (face_normals[np.arange(len(axis)), axis] > 0).astype(int)
    colours = np.array(FACE_COLOURS, dtype=np.uint8)[axis * 2 + side]
    box.visual.face_colors = np.concatenate([colours, np.full((len(colours), 1), 255, np.uint8)],
                                            axis=1)
    return box


def write_box_object(folder):
    """objects.yaml + box.ply + a 96x72 camera.yaml in `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    coloured_box().export(folder / 'box.ply')
    (folder / 'objects.yaml').write_text('objects:\n  - name: box\n    id: 1\n    mesh: box.ply\n')
    (folder / 'camera.yaml').write_text(
        'fx: 150.0\nfy: 150.0\ncx: 47.5\ncy: 35.5\nwidth: 96\nheight: 72\n')
    return folder / 'objects.yaml', folder / 'camera.yaml'


@pytest.fixture(scope='session')
def tiny_dataset(tmp_path_factory):
    """24 rendered 96x72 images of the coloured box, as a BOP dataset (made with pose6d synth)."""
    from pose6d_ros.tools import cli

    root = tmp_path_factory.mktemp('tiny_dataset')
    objects, camera = write_box_object(root / 'inputs')
    status = cli.main(['synth', '--objects', str(objects), '--camera', str(camera),
                       '--out', str(root / 'data'), '--images', '24', '--workers', '1',
                       '--seed', '3', '--config', str(_scene_config(root))])
    assert status == 0
    return root / 'data'


def _scene_config(root, extra=''):
    """Large, unoccluded objects: a learnable set for short CPU runs."""
    path = root / 'scene.yaml'
    path.write_text('scene:\n  occluders: [0, 0]\n  distractors: [0, 1]\n'
                    '  object_size: [0.4, 0.6]\n  objects_per_image: [1, 1]\n' + extra)
    return path


@pytest.fixture(scope='session')
def tiny_negatives_dataset(tmp_path_factory):
    """16 images as tiny_dataset's (another seed), about half of them negatives.

    The negatives: no box, only random shapes, no ground truth (scene.negative_share 0.5).
    """
    from pose6d_ros.tools import cli

    root = tmp_path_factory.mktemp('tiny_negatives')
    objects, camera = write_box_object(root / 'inputs')
    config = _scene_config(root, '  negative_share: 0.5\n  negative_shapes: [1, 3]\n')
    status = cli.main(['synth', '--objects', str(objects), '--camera', str(camera),
                       '--out', str(root / 'data'), '--images', '16', '--workers', '1',
                       '--seed', '5', '--config', str(config)])
    assert status == 0
    return root / 'data'


@pytest.fixture(scope='session')
def dataset(tiny_dataset):
    """tiny_dataset read back (a BopDataset)."""
    from pose6d_ros.core.data.bop import BopDataset

    return BopDataset(tiny_dataset)


@pytest.fixture(scope='session')
def tiny_bundle(tiny_dataset, tmp_path_factory):
    """A keypoints bundle (tiny HRNet, 96x72 input) trained for a few steps on tiny_dataset.

    Barely trained: it exercises every code path, not accuracy.
    """
    from pose6d_ros.tools import cli

    out = tmp_path_factory.mktemp('tiny_bundle') / 'run'
    status = cli.main(['train', '--method', 'keypoints', '--data', str(tiny_dataset),
                       '--out', str(out), '--input-size', '96x72', '--backbone', 'hrnet_tiny',
                       '--epochs', '1', '--batch-size', '4', '--max-iterations', '4',
                       '--workers', '0', '--device', 'cpu', '--quiet'])
    assert status == 0
    return out / 'bundle'


@pytest.fixture(scope='session')
def learned_bundle(tiny_dataset, tmp_path_factory):
    """A tiny keypoints model fitted to tiny_dataset (250 steps, ~1 min on 2 cores).

    Returns (bundle path, the training losses). It finds the box in the training images well
    enough for end-to-end tests that need real detections (learning, bag tool, demo).
    """
    import torch

    from pose6d_ros.core.data.bop import BopDataset
    from pose6d_ros.core.data.training import collate, PoseSamples
    from pose6d_ros.core.inference.bundle import IMAGENET_NORMALISATION, save_bundle
    from pose6d_ros.core.nets.methods import get_method

    torch.manual_seed(0)
    dataset = BopDataset(tiny_dataset)
    objects = dataset.object_set
    method = get_method('keypoints', len(objects), {'backbone': 'hrnet_tiny'})
    network = method.build_network()
    size = (96, 72)
    samples = PoseSamples(dataset, objects, size, method.targets, IMAGENET_NORMALISATION)
    images, targets = collate([samples[i] for i in range(len(samples))])
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    losses = []
    for _ in range(250):
        batch = torch.randperm(len(images))[:8]
        loss, _ = method.loss(network(images[batch]), {k: v[batch] for k, v in targets.items()})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    path = save_bundle(tmp_path_factory.mktemp('learned') / 'bundle', 'keypoints',
                       network.config_dict(), network.state_dict(), objects, size,
                       decoder=method.decoder_config(), normalisation=IMAGENET_NORMALISATION)
    return path, losses
