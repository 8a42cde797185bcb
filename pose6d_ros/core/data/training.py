"""Training samples: BOP images letterboxed to the network input, augmented, with targets.

Each sample is warped once: letterbox (exact, the same mapping as at inference) composed with
a small random similarity (scale, in-plane rotation, shift), then photometric jitter. The
object keypoints are projected with the true camera (distortion included) and pushed through
the same affine map, so targets and pixels always agree.

With `crop` set, a sample is a window of that size cut from the letterboxed input around one
labelled object (at the same scale as at inference). A fully convolutional network learns the
same thing from it at a fraction of the cost per image; it is evaluated on the whole input.
An image without any object (a negative) gives a window anywhere, with all-background
targets, and `background_crops` places that share of the other windows anywhere too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from pose6d_ros.core.data.augment import Photometric
from pose6d_ros.core.geometry.camera import Letterbox
from pose6d_ros.core.geometry.poses import CENTRE_INDEX, Pose


@dataclass
class GeometricAugment:
    scale: tuple = (0.8, 1.2)        # zoom about the input centre (the papers' 0.8-1.2)
    rotation_deg: float = 15.0       # in-plane rotation, +- degrees (HRPose's small rotations)
    shift: float = 0.1               # translation, +- fraction of the input size


@dataclass
class AugmentConfig:
    enabled: bool = True
    geometric: GeometricAugment = field(default_factory=GeometricAugment)
    photometric: Photometric = field(default_factory=Photometric)


@dataclass
class Instance:
    """One labelled object in a training sample, in network-input pixels."""

    class_id: int
    keypoints: np.ndarray   # (9, 2)
    box: np.ndarray         # (4,) visible box x_min, y_min, x_max, y_max
    visib_fract: float


def normalise(images_uint8, mean, std):
    """(B, H, W, 3) or (H, W, 3) uint8 RGB -> float tensor (B, 3, H, W) normalised."""
    tensor = torch.as_tensor(images_uint8)
    if tensor.ndim == 3:
        tensor = tensor[None]
    tensor = tensor.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(mean, dtype=tensor.dtype, device=tensor.device).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=tensor.dtype, device=tensor.device).view(1, 3, 1, 1)
    return (tensor - mean) / std


def letterbox_matrix(letterbox):
    """The 2x3 affine map of a Letterbox (camera pixels -> input pixels)."""
    sx, sy = letterbox.scale_x, letterbox.scale_y
    return np.array([[sx, 0.0, 0.5 * sx - 0.5 + letterbox.pad_x],
                     [0.0, sy, 0.5 * sy - 0.5 + letterbox.pad_y]])


def random_similarity(rng, width, height, config):
    """A random 2x3 similarity about the centre of a width x height input."""
    scale = rng.uniform(*config.scale)
    angle = np.radians(rng.uniform(-config.rotation_deg, config.rotation_deg))
    shift = rng.uniform(-config.shift, config.shift, 2) * (width, height)
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)],
                                 [np.sin(angle), np.cos(angle)]])
    return np.concatenate([rotation, (centre - rotation @ centre + shift)[:, None]], axis=1)


def compose(outer, inner):
    """Composition outer o inner of 2x3 affine maps."""
    return outer[:, :2] @ inner + np.concatenate([np.zeros((2, 2)), outer[:, 2:]], axis=1)


def apply_affine(matrix, points):
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


class PoseSamples(torch.utils.data.Dataset):
    """Network-ready samples from a BopDataset.

    Returns (image tensor (3, H, W), targets) where targets come from `target_builder`
    (a callable taking the list of `Instance` and the input size (W, H)).
    """

    def __init__(self, dataset, objects, input_size, target_builder, normalisation,
                 augment=None, seed=0, crop=None, background_crops=0.0):
        self.dataset = dataset
        self.objects = objects
        self.input_size = tuple(int(v) for v in input_size)
        self.crop = None if crop is None else tuple(int(v) for v in crop)
        # Windows around an object always hold it near their middle: the network would never
        # see the parts of the input away from its objects, where at inference it must find
        # nothing. This share of the windows of images with objects is placed anywhere (its
        # targets are whatever of the objects it holds, often nothing).
        self.background_crops = float(background_crops)
        self.target_builder = target_builder
        self.mean, self.std = normalisation['mean'], normalisation['std']
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self._class_of = {obj.object_id: obj.class_id for obj in objects}

    def set_epoch(self, epoch):
        """Different augmentation every epoch, reproducible from (seed, epoch, index)."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        image, instances = self.load(index)
        tensor = normalise(image, self.mean, self.std)[0]
        return tensor, self.target_builder(instances, self.crop or self.input_size)

    def load(self, index):
        """The warped uint8 image (H, W, 3) and its instances, before normalisation."""
        sample = self.dataset[index]
        image = sample.load_image()
        camera = sample.camera
        width, height = self.input_size
        matrix = letterbox_matrix(Letterbox.fit(camera.width, camera.height, width, height))
        rng = np.random.default_rng([self.seed, self.epoch, index])
        augmenting = self.augment is not None and self.augment.enabled
        if augmenting:
            matrix = compose(random_similarity(rng, width, height, self.augment.geometric),
                             matrix)
        labelled = []
        for annotation in sample.annotations:
            class_id = self._class_of.get(annotation.object_id)
            if class_id is not None:
                obj = self.objects[class_id]
                pixels = camera.project(Pose(annotation.R, annotation.t).transform(obj.keypoints))
                labelled.append((annotation, class_id, pixels))
        if self.crop is not None:
            # The extra draw only when asked for: without it a run takes the windows of
            # earlier versions.
            anywhere = self.background_crops > 0 and rng.random() < self.background_crops
            around = [] if anywhere else [apply_affine(matrix, pixels)
                                          for _, _, pixels in labelled]
            matrix = compose(self._crop_window(rng, around), matrix)
            width, height = self.crop
        warped = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        if augmenting:
            warped = self.augment.photometric.apply(warped, rng)
        instances = []
        for annotation, class_id, pixels in labelled:
            keypoints = apply_affine(matrix, pixels)
            box = np.asarray(annotation.box, dtype=np.float64)
            if np.isfinite(box).all():
                corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]],
                                    [box[2], box[3]]])
                warped_corners = apply_affine(matrix, corners)
                box = np.concatenate([warped_corners.min(axis=0), warped_corners.max(axis=0)])
            instances.append(Instance(class_id, keypoints, box, float(annotation.visib_fract)))
        return warped, instances

    def _crop_window(self, rng, keypoint_sets):
        """The 2x3 shift that moves a crop-sized window of the input to the origin.

        The window holds the centre of one object (picked at random) somewhere in its middle
        half where the input allows, lies inside the input, and starts on a whole pixel (it
        is a plain cut-out of the input sample); with no object it is anywhere.
        """
        (width, height), (crop_w, crop_h) = self.input_size, self.crop
        if keypoint_sets:
            centre = keypoint_sets[rng.integers(len(keypoint_sets))][CENTRE_INDEX]
            corner = centre - rng.uniform(0.25, 0.75, 2) * (crop_w, crop_h)
        else:
            corner = rng.uniform(0.0, 1.0, 2) * (width - crop_w, height - crop_h)
        corner = np.floor(np.clip(corner, 0.0, (width - crop_w, height - crop_h)))
        return np.array([[1.0, 0.0, -corner[0]], [0.0, 1.0, -corner[1]]])


def collate(batch):
    """Stack images; stack target tensors of equal shape, keep the rest as lists."""
    images = torch.stack([item[0] for item in batch])
    targets = [item[1] for item in batch]
    merged = {}
    for key in targets[0]:
        values = [t[key] for t in targets]
        if all(isinstance(v, torch.Tensor) for v in values) and len(
                {tuple(v.shape) for v in values}) == 1:
            merged[key] = torch.stack(values)
        else:
            merged[key] = values
    return images, merged
