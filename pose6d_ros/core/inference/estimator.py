"""The one inference path: image + camera -> list[ObjectPose]   (contract).

Used by the ROS node, the bag tool, `pose6d predict/eval/demo` and validation during
training. Stages: preprocess (letterbox into the network input, normalise), network, decode
(method-specific, on the network's device), then per instance: keypoints back to camera pixels
and PnP with the live intrinsics and distortion.

Scores: a bundle whose card has a `calibration:` section gives calibrated scores (the
precision measured at that raw score, calibration.py), and the card's `min_score` is the
default threshold; without them, raw scores and DEFAULT_SCORE_THRESHOLD, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
import time

import cv2
import numpy as np
import torch

from pose6d_ros.core.cpus import inference_threads, torch_threads
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.camera import Letterbox
from pose6d_ros.core.geometry.pnp import solve_pnp
from pose6d_ros.core.geometry.poses import box_2d
from pose6d_ros.core.geometry.results import ObjectPose
from pose6d_ros.core.inference.bundle import load_bundle
from pose6d_ros.core.inference.onnx_network import OnnxNetwork
from pose6d_ros.core.nets.fuse import fuse_conv_bn
from pose6d_ros.core.nets.methods import get_method

# The threshold of a model whose card sets no min_score.
DEFAULT_SCORE_THRESHOLD = 0.3


@dataclass
class EstimatorConfig:
    score_threshold: float | None = None  # instances below this score are dropped; None: the
    #                                       card's min_score, else DEFAULT_SCORE_THRESHOLD
    calibrate: bool = True                # scores through the card's calibration, if it has one
    max_reprojection_error: float = 10.0  # pixels; worse PnP fits are dropped
    min_keypoints: int = 4                # keypoints needed for PnP (at least 4)
    use_weights: bool = True              # weight PnP points by keypoint confidence
    amp: bool = True                      # fp16/bf16 autocast on a GPU
    optimize: bool = True                 # fold BatchNorm into convs, channels-last memory
    compile: bool = False  # noqa: A003 # torch.compile (CUDA graphs on a GPU: fixed size)
    profile: bool = False                 # synchronise between stages for exact timings
    threads: int = 0                      # CPU threads of the network (torch's or
    #                                       onnxruntime's); 0: torch's count, capped by cpus.py
    onnx: str | None = None               # run the network from this ONNX file (onnxruntime,
    #                                       CPU; `pose6d export`) instead of PyTorch


def select_device(device='auto'):
    """'auto' -> 'cuda' when a GPU is there, else 'cpu'; anything else is checked."""
    if device in (None, 'auto'):
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        raise Pose6dError(f'device {device!r} was asked for but no CUDA GPU is available; '
                          'use device "cpu" or "auto"')
    if not (str(device) == 'cpu' or str(device).startswith('cuda')):
        raise Pose6dError(f'unknown device {device!r}; expected "auto", "cpu" or "cuda[:N]"')
    return str(device)


class Estimator:
    """A network, its method and object set, ready to estimate poses.

    `estimator(image_rgb, camera)` -> list[ObjectPose]; `estimator.batch(images, cameras)`
    -> one list per image (the same results as the single-image path).
    """

    def __init__(self, network, method, objects, input_size, normalisation, decoder=None,
                 device='auto', config=None, calibration=None, min_score=None):
        self.device = select_device(device)
        self.objects = objects
        self.input_size = tuple(int(v) for v in input_size)
        self.config = config or EstimatorConfig()
        # calibration: a ScoreCalibration (raw score -> precision); min_score: the model's
        # default threshold on the scores it returns (both from the bundle card).
        self.calibration = calibration if self.config.calibrate else None
        # A card's min_score is on the calibrated scale when it has a calibration: it does
        # not apply to raw scores.
        self.card_min_score = (None if min_score is None
                               or (calibration is not None and self.calibration is None)
                               else float(min_score))
        onnx = isinstance(network, OnnxNetwork)
        if self.device == 'cpu' and not onnx:
            torch.set_num_threads(inference_threads(self.config.threads))
        # With an ONNX network onnxruntime's pool has the CPUs (onnx_network.py): torch only
        # normalises and decodes small tensors, on one thread, so that no second pool of as
        # many threads fights onnxruntime's for the same cores (10-50x slower stages measured).
        self._torch_stage_threads = 1 if onnx else None
        if isinstance(method, str):  # the network's own configuration decodes its outputs
            config_dict = getattr(network, 'config_dict', None)
            method = get_method(method, len(objects), config_dict() if config_dict else None,
                                decoder=decoder)
        self.method = method
        self.network = self._prepare(network)
        # an OnnxNetwork takes plain contiguous arrays: channels-last is for PyTorch networks
        self._channels_last = self.config.optimize and isinstance(self.network, torch.nn.Module)
        self._mean = torch.tensor(normalisation['mean'], device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(normalisation['std'], device=self.device).view(1, 3, 1, 1)
        self._points_3d = [np.asarray(obj.keypoints, dtype=np.float64) for obj in objects]
        self.timings = {}

    @classmethod
    def from_bundle(cls, path, device='auto', config=None):
        """Load a model bundle (see bundle.py); refuses a corrupt or mismatched one clearly."""
        bundle = load_bundle(path)
        config = config or EstimatorConfig()
        if config.onnx:
            network, device = _onnx_network(bundle, device, config)
        else:
            network = bundle.build_network()
        method = get_method(bundle.method, len(bundle.objects), bundle.card['network'],
                            bundle.card.get('decoder'))
        return cls(network, method, bundle.objects, bundle.input_size,
                   bundle.card['normalisation'], device=device, config=config,
                   calibration=bundle.calibration, min_score=bundle.min_score)

    @property
    def score_threshold(self):
        """The threshold in force: the config's, else the card's min_score, else the default."""
        if self.config.score_threshold is not None:
            return self.config.score_threshold
        return self.card_min_score if self.card_min_score is not None else DEFAULT_SCORE_THRESHOLD

    @score_threshold.setter
    def score_threshold(self, value):
        # One attribute store: a frame being solved in another thread sees the old or the new.
        self.config = replace(self.config, score_threshold=None if value is None
                              else float(value))

    # --- the pipeline -------------------------------------------------------------------------

    def __call__(self, image, camera):
        """Poses of every detected object in one RGB image (H, W, 3) uint8 seen by `camera`."""
        return self.batch([image], [camera])[0]

    @torch.inference_mode()
    def batch(self, images, cameras):
        """Poses for several images (each with its own camera); one list per image."""
        if len(images) != len(cameras):
            raise ValueError(f'got {len(images)} images but {len(cameras)} cameras')
        if not images:
            return []
        with torch_threads(self._torch_stage_threads):
            start = time.perf_counter()
            letterboxes = [self._check(image, camera) for image, camera in zip(images, cameras)]
            tensor = self.preprocess(images, letterboxes)
            self._sync()
            after_preprocess = time.perf_counter()
            outputs = self.forward(tensor)
            self._sync()
            after_network = time.perf_counter()
            decoded = self.method.decode(outputs)   # one host transfer for the batch
            after_decode = time.perf_counter()
            results = [self.solve(instances, letterbox, camera)
                       for instances, letterbox, camera in zip(decoded, letterboxes, cameras)]
            end = time.perf_counter()
        self.timings = {'preprocess': after_preprocess - start,
                        'network': after_network - after_preprocess,
                        'decode': after_decode - after_network, 'pnp': end - after_decode,
                        'total': end - start}
        return results

    @torch.inference_mode()
    def warm_up(self, runs=2):
        """Run the network on blank inputs, so that the first real frame is not the slow one.

        This compiles the network (torch.compile) and fills caches.
        """
        width, height = self.input_size
        tensor = torch.zeros(1, 3, height, width, device=self.device)
        if self._channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        for _ in range(runs):
            self.forward(tensor)
        if self.device.startswith('cuda'):
            torch.cuda.synchronize(self.device)

    def preprocess(self, images, letterboxes):
        """Letterbox + normalise into a (B, 3, H, W) tensor on the device."""
        width, height = self.input_size
        batch = np.empty((len(images), height, width, 3), dtype=np.uint8)
        for i, (image, letterbox) in enumerate(zip(images, letterboxes)):
            batch[i] = letterbox.apply(image, interpolation=cv2.INTER_LINEAR)
        tensor = torch.from_numpy(batch)
        if self.device.startswith('cuda'):
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        tensor = tensor.permute(0, 3, 1, 2).float().div_(255.0)
        tensor = (tensor - self._mean) / self._std
        if self._channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def forward(self, tensor):
        """The network's raw outputs for a preprocessed batch.

        Under AMP they stay in the autocast dtype: the decoders convert only what they read
        (HRPose's large `features` output, for distillation, is never converted).
        """
        if self.device.startswith('cuda') and self.config.amp:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast('cuda', dtype=dtype):
                return self.network(tensor)
        return self.network(tensor)

    def solve(self, instances, letterbox, camera):
        """Decoded instances (network-input pixels) -> ObjectPoses (camera pixels, PnP)."""
        results, raw_scores = [], []
        threshold = self.score_threshold
        for instance in instances:
            score = (float(instance.score) if self.calibration is None
                     else self.calibration(float(instance.score)))
            if score < threshold:
                continue
            found = np.isfinite(instance.keypoints).all(axis=1)
            if found.sum() < max(self.config.min_keypoints, 4):
                continue
            obj = self.objects[instance.class_id]
            keypoints = np.full((9, 2), np.nan)
            keypoints[found] = letterbox.to_camera(instance.keypoints[found])
            weights = instance.confidence[found] if self.config.use_weights else None
            fit = solve_pnp(self._points_3d[instance.class_id][found], keypoints[found],
                            camera, weights=weights)
            if not fit.success or fit.reprojection_error > self.config.max_reprojection_error:
                continue
            box = (letterbox.to_camera(instance.box.reshape(2, 2)).ravel()
                   if instance.box is not None
                   else box_2d(camera.project(fit.pose.transform(obj.keypoints[:8]))))
            box = np.clip(box, -0.5, [camera.width - 0.5, camera.height - 0.5] * 2)
            results.append(ObjectPose(
                obj.name, obj.class_id, obj.object_id, score, keypoints, box,
                fit.R, fit.t, fit.reprojection_error, len(fit.inliers), obj.box_size,
                obj.keypoints[8].copy()))
            raw_scores.append(float(instance.score))
        # Best first; calibration maps score ranges to one precision, the raw score breaks ties.
        order = sorted(range(len(results)), key=lambda i: (-results[i].score, -raw_scores[i]))
        return [results[i] for i in order]

    def _prepare(self, network):
        """The network on the device, in eval mode, optimised as configured."""
        if not isinstance(network, torch.nn.Module):  # an OnnxNetwork: onnxruntime's own
            return network
        network = network.eval()
        if self.config.optimize:

            width, height = self.input_size
            network = fuse_conv_bn(network, torch.rand(1, 3, height, width))
            network = network.to(memory_format=torch.channels_last)
        network = network.to(self.device)
        if self.config.compile:
            if self.device.startswith('cuda'):  # CUDA graphs: one launch per frame
                network = torch.compile(network, mode='reduce-overhead', dynamic=False)
            else:  # weights folded in as constants, convolutions with pre-packed weights
                network = torch.compile(network, dynamic=False, options={'freezing': True})
        return network

    @property
    def backend(self):
        """What runs the network: 'pytorch', 'onnxruntime float32' or 'onnxruntime int8'."""
        precision = getattr(self.network, 'precision', None)
        return 'pytorch' if precision is None else f'onnxruntime {precision}'

    def _sync(self):
        if self.config.profile and self.device.startswith('cuda'):
            torch.cuda.synchronize(self.device)

    def _check(self, image, camera):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise Pose6dError(f'expected an RGB image (H, W, 3) of uint8; got shape '
                              f'{image.shape} of {image.dtype}')
        if image.shape[:2] != (camera.height, camera.width):
            raise Pose6dError(f'image is {image.shape[1]}x{image.shape[0]} but the camera is '
                              f'{camera.width}x{camera.height}')
        return Letterbox.fit(camera.width, camera.height, *self.input_size)


def _onnx_network(bundle, device, config):
    """(OnnxNetwork, 'cpu') for `config.onnx`; refuses what it cannot honour."""
    if device not in (None, 'auto', 'cpu'):
        raise Pose6dError(f'an ONNX model runs on the CPU (onnxruntime); device {device!r} was '
                          'asked for: use device "cpu" or "auto", or drop the ONNX model')
    if config.compile:
        raise Pose6dError('compile (torch.compile) applies to the PyTorch network, not to an '
                          'ONNX model (onnx_model / --onnx): turn one of them off')
    return OnnxNetwork(config.onnx, bundle, threads=inference_threads(config.threads)), 'cpu'
