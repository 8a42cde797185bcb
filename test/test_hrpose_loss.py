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
    expected = (parts['task'] + 0.5 * parts['output_distillation']
                + 5e-5 * parts['feature_similarity'])
    assert total.item() == pytest.approx(expected.item())
    total.backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in student.values())
    assert all(v.grad is None for v in teacher.values())
