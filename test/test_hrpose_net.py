"""HRPose network: shapes and channel layout, gradients everywhere, config round trips, sizes."""

import io
import json

import pytest
import torch

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.nets.hrnet import (
    get_config,
    HRNet,
    hrnet_tiny,
    hrnet_w18,
    hrnet_w18_small,
    HRNetConfig,
    output_size,
)
from pose6d_ros.core.nets.hrpose import (
    count_parameters,
    HRPose,
    HRPoseConfig,
    parameter_report,
    per_class,
)

TINY_WIDTHS = (8, 16, 32, 64)


def tiny(num_classes=1, **kwargs):
    torch.manual_seed(0)
    return HRPose(HRPoseConfig(backbone='hrnet_tiny', num_classes=num_classes, head_width=16,
                               **kwargs))


@pytest.mark.parametrize('num_classes', [1, 3])
@pytest.mark.parametrize('size', [(64, 64), (96, 128), (72, 100)])
def test_output_shapes_at_stride_4(num_classes, size):
    model = tiny(num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    h, w = output_size(*size)
    assert (h, w) == ((size[0] + 3) // 4, (size[1] + 3) // 4)
    assert out['belief'].shape == (2, num_classes * 9, h, w)
    assert out['vectors'].shape == (2, num_classes * 16, h, w)
    assert out['features'].shape == (2, sum(TINY_WIDTHS), h, w)
    assert all(torch.isfinite(t).all() for t in out.values())


def test_channel_layout_is_class_major():
    # With a zero last-layer weight every output channel equals its bias, which reveals where
    # each (class, keypoint) and (class, corner, dx/dy) lands.
    num_classes = 3
    model = tiny(num_classes).eval()
    last = model.regressor[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.arange(last.out_channels, dtype=torch.float32))
        out = model(torch.randn(1, 3, 32, 32))
    belief, vectors = per_class(out)
    assert belief.shape[1:3] == (num_classes, 9) and vectors.shape[1:4] == (num_classes, 8, 2)
    for c in range(num_classes):
        for k in range(9):
            assert torch.all(out['belief'][:, c * 9 + k] == c * 9 + k)
            assert torch.all(belief[:, c, k] == c * 9 + k)
        for k in range(8):
            for d in range(2):   # 0 = dx, 1 = dy
                channel = c * 16 + 2 * k + d
                assert torch.all(out['vectors'][:, channel] == num_classes * 9 + channel)
                assert torch.all(vectors[:, c, k, d] == out['vectors'][:, channel])


def test_fresh_head_predicts_near_zero_maps():
    out = tiny().eval()(torch.randn(1, 3, 32, 32))
    assert out['belief'].abs().max() < 0.1 and out['vectors'].abs().max() < 0.1


def test_every_parameter_gets_a_finite_gradient():
    model = tiny(num_classes=2).train()
    out = model(torch.randn(2, 3, 64, 64))
    loss = sum(t.square().mean() for t in out.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f'no gradient for {missing}'
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f'non-finite gradient for {bad}'
    zero = [n for n, p in model.named_parameters() if not p.grad.any()]
    assert not zero, f'all-zero gradient for {zero}'


def test_train_and_eval_modes():
    model = tiny()
    x = torch.randn(2, 3, 64, 64)
    model.train()
    out_train = model(x)
    assert all(torch.isfinite(t).all() for t in out_train.values())
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert torch.equal(a['belief'], b['belief'])          # eval is deterministic
    assert not torch.allclose(a['features'], out_train['features'])  # BN uses running stats
    with torch.no_grad():
        single = model(x[:1])
    assert torch.allclose(single['belief'], a['belief'][:1], atol=1e-5)  # no batch coupling


def test_config_dict_round_trip_rebuilds_the_same_model():
    model = tiny(num_classes=3).eval()
    args = json.loads(json.dumps(model.config_dict()))  # plain types only
    assert args['backbone']['widths'] == list(TINY_WIDTHS)
    rebuilt = HRPose.from_config_dict(args).eval()
    ref, new = model.state_dict(), rebuilt.state_dict()
    assert list(ref) == list(new)
    assert all(ref[k].shape == new[k].shape for k in ref)
    rebuilt.load_state_dict(ref)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        a, b = model(x), rebuilt(x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_rebuilds_the_model_from_the_file_alone():
    model = tiny(num_classes=2).eval()
    buffer = io.BytesIO()
    torch.save({'model_args': model.config_dict(), 'model': model.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    rebuilt = HRPose.from_config_dict(ckpt['model_args'])
    rebuilt.load_state_dict(ckpt['model'])
    rebuilt.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x)['vectors'], rebuilt(x)['vectors'])


def test_backbone_accepts_a_preset_name_a_config_or_a_dict():
    by_name = HRPoseConfig(backbone='hrnet_tiny')
    by_dict = HRPoseConfig(backbone=hrnet_tiny().to_dict())
    assert by_name.backbone_config() == by_dict.backbone_config() == hrnet_tiny()
    assert HRPoseConfig.from_dict(by_name.to_dict()) == by_dict


def test_official_hrnet_numbers():
    # HRNet-Image-Classification experiments/cls_hrnet_w18{,_small_v2}_*.yaml
    w18, small = hrnet_w18(), hrnet_w18_small()
    assert (w18.stage1_blocks, w18.modules, w18.blocks) == (4, (1, 4, 3), (4, 4, 4))
    assert (small.stage1_blocks, small.modules, small.blocks) == (2, (1, 3, 2), (2, 2, 2))
    assert w18.widths == small.widths == (18, 36, 72, 144)
    assert w18.out_channels == small.out_channels == 270
    assert get_config('hrnet_w18') == w18


def test_parameter_counts_are_close_to_the_paper():
    # Table III: teacher (HRNetV2-W18) 9.7M, HRPose (small HRNetV2-W18) 4.2M. The HRNetV2-W18
    # backbone alone is 9.56M (HRNet's published ~9.6M); the heads add ~0.2M.
    report = parameter_report()
    student, teacher = report['student'], report['teacher']
    print(f'\nstudent {student[1]["params"]:,} (8 classes {student[8]["params"]:,}), '
          f'teacher {teacher[1]["params"]:,} (8 classes {teacher[8]["params"]:,})')
    assert 9.4e6 < teacher['backbone_params'] < 9.7e6
    assert 3.6e6 < student['backbone_params'] < 4.1e6
    assert 3.8e6 < student[1]['params'] < 4.5e6
    assert 9.5e6 < teacher[1]['params'] < 10.0e6
    for entry in (student, teacher):
        # 7 more classes = 7 * 25 more output channels of the last 1x1 conv (64 in + 1 bias).
        assert entry[8]['params'] - entry[1]['params'] == 7 * 25 * 65
    model = tiny()
    assert count_parameters(model) == count_parameters(model, trainable_only=True)
    model.backbone.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model.regressor)


def test_scaled_config_is_a_width_and_depth_knob():
    cfg = hrnet_w18().scaled(width=0.5, depth=0.5)
    assert cfg.widths == (9, 18, 36, 72) and cfg.stem_width == 32
    assert cfg.modules == (1, 2, 2) and cfg.blocks == (2, 2, 2)   # rounded, never below 1
    model = HRNet(hrnet_tiny().scaled(width=0.5)).eval()  # 1x1 at 1/32: no train-mode BN
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 60, 8, 8)


def test_bilinear_fusion_option():
    model = HRNet(HRNetConfig(**{**hrnet_tiny().to_dict(), 'upsample': 'bilinear'}))
    assert model(torch.randn(1, 3, 36, 52)).shape == (1, 120, 9, 13)


@pytest.mark.parametrize('kwargs, message', [
    ({'widths': (8, 16, 32), 'modules': (1, 1, 1)}, '3 widths need 2 entries'),
    ({'widths': (8, 0, 32, 64)}, 'widths='),
    ({'upsample': 'cubic'}, 'upsample must be one of'),
])
def test_bad_backbone_configs_are_explained(kwargs, message):
    with pytest.raises(Pose6dError, match=message):
        HRNetConfig(**kwargs)


def test_bad_model_configs_are_explained():
    with pytest.raises(Pose6dError, match='unknown HRNet preset'):
        HRPoseConfig(backbone='resnet50')
    with pytest.raises(Pose6dError, match='num_classes must be >= 1'):
        HRPoseConfig(num_classes=0)
    with pytest.raises(Pose6dError, match=r'unknown key\(s\) dropout'):
        HRPose.from_config_dict({**tiny().config_dict(), 'dropout': 0.1})
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        tiny()(torch.randn(3, 32, 32))
