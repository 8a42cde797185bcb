"""HRPose losses: the task loss and the integrated knowledge distillation (Guan et al.).

- task: mean squared error on the belief maps and on the vector fields;
- output distillation: the same MSE between the student's and the frozen teacher's outputs;
- feature-similarity distillation: pairwise cosine-similarity matrices of backbone features,
  pooled to a shared spatial size, compared by squared error (structured knowledge
  distillation, Liu et al.).

The weights (alpha 0.5, beta 5e-5) balance sums per image. The paper's extraction lost its
equations; its source for the pair term (Liu et al.) averages the squared difference over the
pairs of locations, and HRPose's own figures pin the scale: with beta = 5e-5 the term helps
and with 1e-3 it "disrupts the training". That holds when every term is a sum per image: the
task and output terms over all output elements, the pair term over all (h w)^2 pairs of the
full-resolution feature map. In PyTorch's mean units (the MSE terms here are means over
elements) the pair term is then its mean over pairs times (h w)^2 / elements
(`similarity_scale`: 502 for one class at 448x448). Measured on untrained networks at 448x448
(a teacher on HRNetV2-W18, a student on the small one): the beta-weighted term is about 1.8x
the task term at beta 5e-5 and 37x at 1e-3. The earlier sum over the pooled pairs with mean
MSE terms made it about 2200x at 5e-5. The features are pooled to `similarity_size`^2
locations first: a cheaper estimate of the mean over all pairs, not a change of scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F


@dataclass
class DistillationWeights:
    output: float = 0.5                # alpha: output distillation
    feature_similarity: float = 5e-5   # beta: feature-similarity distillation
    similarity_size: int = 28          # features are pooled to this size (square) first


def keypoint_loss(outputs, targets, peak_weight=0.0):
    """Task loss: MSE on belief maps plus MSE on vector fields.

    outputs / targets: dicts with 'belief' (B, C*9, h, w) and 'vectors' (B, C*16, h, w).
    peak_weight = 0 is the paper's plain MSE. peak_weight > 0 (our addition) weights each pixel
    by 1 + peak_weight * target belief (and 1 + peak_weight where a vector target is set): the
    few peak pixels then count, which gets a network off the all-zero plateau much sooner.
    """
    belief, vectors = split_keypoint_loss(outputs, targets, peak_weight)
    return belief + vectors


def split_keypoint_loss(outputs, targets, peak_weight=0.0):
    """(belief term, vector term) of `keypoint_loss`."""
    if not peak_weight:
        return (F.mse_loss(outputs['belief'], targets['belief']),
                F.mse_loss(outputs['vectors'], targets['vectors']))
    belief_weight = 1.0 + peak_weight * targets['belief']
    vector_weight = 1.0 + peak_weight * (targets['vectors'] != 0).to(outputs['vectors'].dtype)
    return ((belief_weight * (outputs['belief'] - targets['belief']) ** 2).mean(),
            (vector_weight * (outputs['vectors'] - targets['vectors']) ** 2).mean())


def output_distillation_loss(student, teacher):
    """MSE between the student's and the teacher's belief maps and vector fields."""
    return (F.mse_loss(student['belief'], teacher['belief'].detach())
            + F.mse_loss(student['vectors'], teacher['vectors'].detach()))


def similarity_matrix(features, size):
    """Pairwise cosine similarities (B, N, N) of features pooled to size x size (N = size^2)."""
    pooled = F.adaptive_avg_pool2d(features, size)          # (B, C, s, s)
    vectors = F.normalize(pooled.flatten(2), dim=1)         # (B, C, N), unit along channels
    return vectors.transpose(1, 2) @ vectors                # (B, N, N)


def feature_similarity_loss(student_features, teacher_features, size):
    """Squared difference of the two similarity matrices, averaged over pairs and the batch."""
    student = similarity_matrix(student_features, size)
    teacher = similarity_matrix(teacher_features.detach(), size)
    return ((student - teacher) ** 2).mean()


def similarity_scale(outputs):
    """(h w)^2 / output elements per image: the pair term's weight in mean units (module)."""
    h, w = outputs['features'].shape[-2:]
    elements = outputs['belief'][0].numel() + outputs['vectors'][0].numel()
    return (h * w) ** 2 / elements


def distillation_loss(student, teacher, targets, weights=None, peak_weight=0.0):
    """Task + alpha * output distillation + beta * feature similarity -> (total, parts)."""
    weights = weights or DistillationWeights()
    parts = {
        'task': keypoint_loss(student, targets, peak_weight),
        'output_distillation': output_distillation_loss(student, teacher),
        'feature_similarity': feature_similarity_loss(student['features'], teacher['features'],
                                                      weights.similarity_size),
    }
    total = (parts['task'] + weights.output * parts['output_distillation']
             + weights.feature_similarity * similarity_scale(student)
             * parts['feature_similarity'])
    return total, parts
