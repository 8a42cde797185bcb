"""HRPose losses: distillation terms vanish when the student equals the teacher."""

import pytest
import torch

from pose6d_ros.core.nets.hrpose_loss import (
    distillation_loss,
    DistillationWeights,
    feature_similarity_loss,
    keypoint_loss,
    output_distillation_loss,
    similarity_matrix,
    similarity_scale,
)


def outputs(seed, features_channels=6):
    generator = torch.Generator().manual_seed(seed)
    return {
        'belief': torch.rand(2, 9, 12, 16, generator=generator),
        'vectors': torch.rand(2, 16, 12, 16, generator=generator) * 2 - 1,
        'features': torch.rand(2, features_channels, 12, 16, generator=generator),
    }


def test_task_loss_is_zero_on_the_targets_and_positive_elsewhere():
    targets = outputs(0)
    assert keypoint_loss(targets, targets).item() == 0.0
    assert keypoint_loss(outputs(1), targets).item() > 0.0


def test_distillation_terms_are_zero_when_student_equals_teacher():
    teacher = outputs(0)
    student = {k: v.clone() for k, v in teacher.items()}
    assert output_distillation_loss(student, teacher).item() == 0.0
    assert feature_similarity_loss(student['features'], teacher['features'], 4).item() \
        == pytest.approx(0.0, abs=1e-10)
    other = outputs(1)
    assert output_distillation_loss(other, teacher).item() > 0.0
    assert feature_similarity_loss(other['features'], teacher['features'], 4).item() > 0.0


def test_feature_similarity_compares_structure_not_channels():
    """Teacher and student may have different widths; a channel rescale changes nothing."""
    teacher = outputs(0, features_channels=10)['features']
    student = torch.rand(2, 4, 12, 16)
    assert feature_similarity_loss(student, teacher, 4).item() > 0.0
    assert feature_similarity_loss(teacher * 3.0, teacher, 4).item() == pytest.approx(0, abs=1e-9)
    matrix = similarity_matrix(teacher, 4)
    assert matrix.shape == (2, 16, 16)
    assert torch.allclose(torch.diagonal(matrix, dim1=1, dim2=2), torch.ones(2, 16), atol=1e-5)


def test_combined_loss_weights_and_gradients_reach_only_the_student():
    teacher = {k: v.requires_grad_() for k, v in outputs(0).items()}
    student = {k: v.requires_grad_() for k, v in outputs(1).items()}
    targets = outputs(2)
    weights = DistillationWeights(output=0.5, feature_similarity=5e-5, similarity_size=4)
    total, parts = distillation_loss(student, teacher, targets, weights)
    # The pair term is a mean over pairs, weighted as a sum over the full-resolution feature
    # map's (h w)^2 pairs against the task's sum over output elements (hrpose_loss.py).
    h, w = student['features'].shape[-2:]
    scale = (h * w) ** 2 / (student['belief'][0].numel() + student['vectors'][0].numel())
    assert similarity_scale(student) == pytest.approx(scale)
    expected = (parts['task'] + 0.5 * parts['output_distillation']
                + 5e-5 * scale * parts['feature_similarity'])
    assert total.item() == pytest.approx(expected.item())
    assert parts['feature_similarity'].item() <= 4.0   # a mean of squared cosine differences
    total.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in student.values())
    assert all(v.grad is None for v in teacher.values())


def test_peak_weight_zero_is_the_papers_mse_and_positive_weights_the_peaks():
    targets = outputs(0)
    targets['belief'] = torch.zeros_like(targets['belief'])
    targets['belief'][:, :, 5, 5] = 1.0
    targets['vectors'] = torch.zeros_like(targets['vectors'])
    prediction = {k: torch.zeros_like(v) for k, v in targets.items()}
    plain = keypoint_loss(prediction, targets)
    assert plain.item() == pytest.approx(
        torch.nn.functional.mse_loss(prediction['belief'], targets['belief']).item())
    assert keypoint_loss(prediction, targets, peak_weight=0.0).item() == plain.item()
    # A miss at the peak costs (1 + w) times more; background errors are unchanged.
    assert keypoint_loss(prediction, targets, peak_weight=9.0).item() == pytest.approx(
        10 * plain.item())
    background = {k: v.clone() for k, v in targets.items()}
    background['belief'][:, :, 0, 0] = 0.5
    assert keypoint_loss(background, targets, peak_weight=9.0).item() == pytest.approx(
        keypoint_loss(background, targets).item())


def test_unknown_loss_options_are_refused():
    from pose6d_ros.core.errors import Pose6dError
    from pose6d_ros.core.nets.methods import get_method

    with pytest.raises(Pose6dError, match='unknown key.*peak_weigth'):
        get_method('keypoints', 1, loss={'peak_weigth': 3})
