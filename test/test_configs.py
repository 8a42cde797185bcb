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
