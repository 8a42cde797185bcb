"""Every bundle shipped in models/ loads safely, builds its network, stays small and portable."""

from pathlib import Path

import pytest
import torch

from pose6d_ros.core.inference.bundle import load_bundle

MODELS = Path(__file__).resolve().parents[1] / 'models'
BUNDLES = sorted(p for p in MODELS.iterdir() if (p / 'card.yaml').is_file())
MAX_MEGABYTES = 20


def test_there_are_bundled_models():
    assert {'demo_box_keypoints', 'lmo_keypoints', 'lmo_corners'} <= {p.name for p in BUNDLES}


@pytest.mark.parametrize('path', BUNDLES, ids=lambda p: p.name)
def test_a_bundled_model_loads_and_its_network_takes_its_weights(path):
    bundle = load_bundle(path)
    network = bundle.build_network()
    network.load_state_dict({k: v.float() for k, v in bundle.state_dict.items()})
    width, height = bundle.input_size
    with torch.no_grad():
        network.eval()(torch.zeros(1, 3, height, width))
    size = sum(f.stat().st_size for f in path.iterdir()) / 1e6
    assert size < MAX_MEGABYTES, f'{path.name}: {size:.1f} MB'


@pytest.mark.parametrize('path', BUNDLES, ids=lambda p: p.name)
def test_a_bundled_card_names_no_path_of_the_machine_that_trained_it(path):
    card = (path / 'card.yaml').read_text()
    for local in ('/work/', '/home/', '/tmp/', '/root/'):
        assert local not in card, f'{path.name}/card.yaml names {local}'
