"""Every shipped synthesis and training config loads, and builds what it describes."""

from pathlib import Path

import pytest

from pose6d_ros.core.data.synth import SynthConfig
from pose6d_ros.core.nets.methods import get_method
from pose6d_ros.core.training.train import load_config

ROOT = Path(__file__).resolve().parents[1]
SYNTH_CONFIGS = sorted((ROOT / 'config' / 'synth').glob('*.yaml'))
TRAIN_CONFIGS = sorted((ROOT / 'config' / 'train').glob('*.yaml'))


def test_there_are_configs_to_check():
    assert SYNTH_CONFIGS and TRAIN_CONFIGS


@pytest.mark.parametrize('path', SYNTH_CONFIGS, ids=lambda p: p.name)
def test_synth_config_loads(path):
    config = SynthConfig.load(path)
    assert 0.0 <= config.procedural_probability <= 1.0


@pytest.mark.parametrize('path', TRAIN_CONFIGS, ids=lambda p: p.name)
def test_training_config_loads_and_builds_its_network(path):
    config = load_config(path).resolved()
    method = get_method(config.method, 1, config.network, config.decoder, config.loss)
    network = method.build_network()
    assert sum(p.numel() for p in network.parameters()) > 0


def test_the_sim_to_real_recipe_uses_every_feature_and_its_proxy_shifts_them():
    """lmo_train_v2.yaml turns on what real photographs need (issue 21).

    lmo_shifted_v2.yaml, its held-out proxy, moves those knobs beyond the training ranges.
    """
    train = SynthConfig.load(ROOT / 'config' / 'synth' / 'lmo_train_v2.yaml')
    shifted = SynthConfig.load(ROOT / 'config' / 'synth' / 'lmo_shifted_v2.yaml')
    for config in (train, shifted):
        assert config.lighting.lights[1] > 1 and config.lighting.kelvin is not None
        assert config.shadows.probability > 0 and config.photometric.camera_effects
        assert config.scene.changes_albedo and config.scene.occluders[1] > 0
    photometric = train.photometric
    for name in ('blur', 'noise', 'jpeg', 'white_balance', 'gamma', 'defocus', 'sharpen',
                 'grey'):
        assert getattr(photometric, f'{name}_probability') > 0, name
    assert shifted.lighting.kelvin[0] < train.lighting.kelvin[0]
    assert shifted.scene.albedo_contrast[1] > train.scene.albedo_contrast[1]
    assert shifted.photometric.gamma[1] > train.photometric.gamma[1]
