"""`pose6d train` and `pose6d distill`: argument parsing for the training loop (train.py)."""

from __future__ import annotations

import os
import signal

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.tools.cli_args import fraction as _fraction
from pose6d_ros.tools.cli_args import positive_int as _positive_int


def register(commands):
    """Add the train and distill sub-commands to the `pose6d` parser."""
    train = commands.add_parser(
        'train', help='train a network on a BOP-format dataset; writes RUN_DIR/bundle',
        description="Config precedence: defaults, then the method's paper defaults, then "
                    '--config YAML, then these flags. The resolved config is saved in RUN_DIR.')
    train.add_argument('--method', choices=('keypoints', 'corners'), default=None,
                       help='keypoints (HRPose) or corners (SSD corner regression)')
    _common(train)
    train.set_defaults(run=_run_train, distill=False)

    distill = commands.add_parser(
        'distill', help='train the HRPose student with knowledge distillation from a teacher',
        description='Output distillation (weight 0.5) and feature-similarity distillation '
                    '(weight 5e-5) from a frozen teacher bundle, added to the task loss.')
    distill.add_argument('--teacher', required=True, metavar='BUNDLE',
                         help='the trained keypoints teacher bundle')
    _common(distill)
    distill.set_defaults(run=_run_train, distill=True, method='keypoints')


def _common(parser):
    parser.add_argument('--data', metavar='DIR', help='BOP-format training dataset')
    parser.add_argument('--val-data', metavar='DIR',
                        help='held-out BOP dataset (default: --val-fraction of --data)')
    parser.add_argument('--val-fraction', type=_fraction,
                        help='share of --data held out for validation when there is no '
                             '--val-data (default: 0.1)')
    parser.add_argument('--objects', metavar='PATH',
                        help="objects YAML or models_info folder (default: the dataset's)")
    parser.add_argument('--out', metavar='RUN_DIR', help='run directory')
    parser.add_argument('--config', metavar='YAML', help='training config file')
    parser.add_argument('--input-size', metavar='WxH', help='network input, e.g. 448x448')
    parser.add_argument('--train-crop', metavar='WxH',
                        help='keypoints: train on windows of this size around an object '
                             '(cheaper per image; evaluation uses the whole input)')
    parser.add_argument('--background-crops', type=float, metavar='SHARE',
                        help='with --train-crop: this share of the windows of images with '
                             'objects is cut anywhere, not around an object (default: 0)')
    parser.add_argument('--init-weights', metavar='PATH',
                        help='start from the weights of a bundle or a checkpoint.pt (fine-tune)')
    parser.add_argument('--epochs', type=_positive_int)
    parser.add_argument('--batch-size', type=_positive_int)
    parser.add_argument('--lr', type=float)
    parser.add_argument('--workers', type=int)
    parser.add_argument('--device', help='auto, cpu or cuda')
    parser.add_argument('--seed', type=int)
    parser.add_argument('--max-iterations', type=_positive_int, help='stop after N steps')
    parser.add_argument('--backbone',
                        help='keypoints: hrnet_w18 (teacher), hrnet_w18_small (student, '
                             'default), hrnet_tiny, efficientnet_lite0; corners: resnet50 '
                             "(default, the paper's), resnet34, resnet18, efficientnet_lite0")
    parser.add_argument('--pretrained', metavar='FILE',
                        help='ImageNet weights for the backbone (torchvision ResNet, official '
                             'HRNet or EfficientNet-Lite0 layout), or none; default auto: the '
                             'installed EfficientNet-Lite0 file for that backbone, else random')
    parser.add_argument('--resume', action='store_true', help="continue RUN_DIR's checkpoint")
    parser.add_argument('--force', action='store_true',
                        help='start over in a RUN_DIR that holds an earlier run (deletes its '
                             'checkpoint, log and bundle)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def _run_train(args):
    from pose6d_ros.core.nets.methods import (
        backbone_network_config,  # deferred: torch (fast --help)
    )
    from pose6d_ros.core.training.train import load_config, train  # deferred: as above

    overrides = {
        'method': args.method, 'data': args.data, 'val_data': args.val_data,
        'val_fraction': args.val_fraction,
        'objects': args.objects, 'out': args.out, 'input_size': args.input_size,
        'train_crop': args.train_crop, 'background_crops': args.background_crops,
        'init_weights': args.init_weights,
        'epochs': args.epochs, 'batch_size': args.batch_size, 'lr': args.lr,
        'workers': args.workers, 'device': args.device, 'seed': args.seed,
        'max_iterations': args.max_iterations, 'pretrained': args.pretrained,
        'teacher': getattr(args, 'teacher', None),
    }
    config = load_config(args.config, overrides)
    if args.backbone:
        config.network = {**config.network,
                          **backbone_network_config(config.method, args.backbone)}
    if args.distill and config.method != 'keypoints':
        raise Pose6dError('pose6d distill trains the keypoints method only')
    # SIGTERM (a scheduler, a closing session, `kill`) stops training as Ctrl-C does: with a
    # checkpoint of the iteration reached, so that --resume loses nothing.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run = train(config, resume=args.resume, progress=not args.quiet, force=args.force)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if int(os.environ.get('RANK', 0)) == 0:  # under torchrun, once, not once per process
        print('\n'.join(run.summary_lines()))
    return 0


def _interrupt(signum, frame):
    """Stop training as Ctrl-C does."""
    raise KeyboardInterrupt
