"""The per-frame pipeline over a recorded ROS 2 bag, with rosbags: no ROS install needed.

`run_bag(estimator, in_bag, out_bag, ...)` reads a bag (sqlite3 or mcap), pairs every image
with the camera_info whose stamp is closest to the image's, runs the `FramePipeline`, and
writes a new bag holding every input topic plus `<ns>/poses`, `<ns>/detections`,
`<ns>/markers`, `/tf` and `<ns>/debug_image`, each output at the receive time of its image.
The bag is written under a temporary name beside the output and moved into place at the end;
an existing output is replaced only with `force`. `pose6d bag` (tools/cli.py) is the command.
With `config.tracking` the same tracker as the node's runs over the bag, on the images'
header stamps, so a bag filters as the live camera would.

This module never imports rclpy.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
import shutil

from tqdm import tqdm

from pose6d_ros.core.files import make_temp_dir, move_into_place
from pose6d_ros.ros import conversions
from pose6d_ros.ros.errors import BagError, FrameError
from pose6d_ros.ros.pipeline import FramePipeline, PipelineConfig

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
STORAGES = ('sqlite3', 'mcap')
# rosbag2 metadata version written (rosbags writes 8 or 9). Humble's `ros2 bag` cannot parse
# version 9 metadata (ros2/rosbag2#1895): there, delete metadata.yaml and `ros2 bag reindex`.
BAG_VERSION = 9


def output_topics(ns='/pose6d'):
    """{role: (topic, message type)} of what `run_bag` adds to a bag."""
    ns = '/' + ns.strip('/') if ns.strip('/') else ''
    return {
        'poses': (f'{ns}/poses', 'geometry_msgs/msg/PoseArray'),
        'detections': (f'{ns}/detections', 'vision_msgs/msg/Detection3DArray'),
        'markers': (f'{ns}/markers', 'visualization_msgs/msg/MarkerArray'),
        'tf': ('/tf', 'tf2_msgs/msg/TFMessage'),
        'debug_image': (f'{ns}/debug_image', 'sensor_msgs/msg/Image'),
    }


@dataclass
class BagSummary:
    """What `run_bag` did."""

    out_bag: Path
    storage: str
    frames: int = 0                 # images read on the image topic
    processed: int = 0              # frames that went through the estimator
    instances: int = 0              # kept object instances over all frames
    network_runs: int = 0           # frames the estimator ran on (all, without tracking)
    sources: Counter = field(default_factory=Counter)        # with tracking: pose source -> n
    errors: Counter = field(default_factory=Counter)          # FrameError reason -> count
    first_errors: dict = field(default_factory=dict)         # reason -> first message
    not_copied: list = field(default_factory=list)           # input topics left out, why

    @property
    def skipped(self):
        return self.frames - self.processed

    def format(self):  # noqa: A003
        """A few human-readable lines."""
        lines = [f'{self.frames} frames, {self.processed} processed, {self.skipped} skipped, '
                 f'{self.instances} object instances -> {self.out_bag} ({self.storage})']
        if self.sources:
            lines.append(f'  tracking: the network ran on {self.network_runs} of '
                         f'{self.processed} frames; poses by source: '
                         + ', '.join(f'{n} {source}' for source, n in sorted(
                             self.sources.items())))
        for reason, count in self.errors.most_common():
            lines.append(f'  skipped {count}x: {self.first_errors[reason]}')
        for note in self.not_copied:
            lines.append(f'  not copied: {note}')
        return '\n'.join(lines)


def run_bag(estimator, in_bag, out_bag, image_topic='/camera/image_raw',
            info_topic='/camera/camera_info', ns='/pose6d', config=None, storage=None,
            distro=None, debug_image=True, force=False, progress=False):
    """Run `estimator` over the images of `in_bag` and write `out_bag`; returns a BagSummary.

    storage: 'sqlite3' or 'mcap' (None: as the input). distro: 'humble' or 'jazzy', the
    message definitions written for the outputs (None: the input's, else jazzy). Bad frames
    are counted and skipped; a bag whose every frame is bad is an error and writes nothing.
    """
    from rosbags.rosbag2 import Writer  # deferred: rosbags loads only for the bag tool

    in_bag, out_bag = Path(in_bag), Path(out_bag)
    _check_paths(in_bag, out_bag, force)
    reader = _open_reader(in_bag)
    try:
        _check_topics(reader, in_bag, image_topic, info_topic)
        storage = storage or _storage_of(in_bag)
        if storage not in STORAGES:
            raise BagError(f'unknown bag storage {storage!r}; expected one of '
                           f'{", ".join(STORAGES)}')
        types = conversions.RosbagsTypes.for_distro(distro or _distro_of(reader))
        pipeline = FramePipeline(estimator, config or PipelineConfig(), types)
        infos = _camera_infos(reader, types, info_topic)
        summary = BagSummary(out_bag=out_bag, storage=storage)
        tmp_dir = make_temp_dir(out_bag.parent, f'.{out_bag.name}.', '.partial')
        try:
            with Writer(tmp_dir / out_bag.name, version=BAG_VERSION,
                        storage_plugin=_storage_plugin(storage)) as writer:
                copies, outputs = _add_connections(writer, reader, types, ns, debug_image,
                                                   summary)
                _process(reader, writer, copies, outputs, pipeline, types, infos, image_topic,
                         summary, progress)
            if summary.frames and not summary.processed:
                reason, count = summary.errors.most_common(1)[0]
                raise BagError(f'none of the {summary.frames} frames on {image_topic} could be '
                               f'processed ({count}x: {summary.first_errors[reason]}); '
                               'nothing written')
            move_into_place(tmp_dir / out_bag.name, out_bag)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    finally:
        reader.close()
    return summary


# --- reading ---------------------------------------------------------------------------------


def _check_paths(in_bag, out_bag, force):
    if not in_bag.exists():
        raise BagError(f'input bag not found: {in_bag}')
    if out_bag.resolve() == in_bag.resolve():
        raise BagError(f'output bag {out_bag} is the input bag; expected a new path')
    if in_bag.is_dir() and in_bag.resolve() in out_bag.resolve().parents:
        raise BagError(f'output bag {out_bag} is inside the input bag {in_bag}')
    if not out_bag.parent.is_dir():
        raise BagError(f'output folder not found: {out_bag.parent}')
    if out_bag.exists() and not force:
        raise BagError(f'output bag {out_bag} exists; pass --force to overwrite it')


def _open_reader(path):
    from rosbags.rosbag2 import Reader, ReaderError  # deferred: as Writer above

    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError, KeyError, ValueError) as exc:
        raise BagError(f'cannot read bag {path}: {exc}; expected a ROS 2 bag (a folder with '
                       'metadata.yaml, or a .db3 / .mcap file)') from None
    return reader


def _check_topics(reader, path, image_topic, info_topic):
    topics = {name: info.msgtype for name, info in reader.topics.items()}
    listing = ', '.join(f'{name} ({msgtype})' for name, msgtype in sorted(topics.items()))
    wanted = ((image_topic, IMAGE_TYPES, '--image-topic'), (info_topic, (INFO_TYPE,),
                                                            '--info-topic'))
    for topic, msgtypes, option in wanted:
        if topic not in topics:
            raise BagError(f'bag {path} has no topic {topic!r} (expected {" or ".join(msgtypes)};'
                           f' choose one with {option}); it has: {listing or "no topics"}')
        if topics[topic] not in msgtypes:
            raise BagError(f'topic {topic!r} in bag {path} carries {topics[topic]}; expected '
                           f'{" or ".join(msgtypes)}; the bag has: {listing}')
    if not reader.topics[info_topic].msgcount:
        raise BagError(f'topic {info_topic!r} in bag {path} has no messages; expected '
                       'camera_info messages')


def _storage_of(path):
    if path.is_file():
        return {'.mcap': 'mcap', '.db3': 'sqlite3'}.get(path.suffix, 'sqlite3')
    suffixes = {p.suffix for p in path.iterdir()}
    return 'mcap' if '.mcap' in suffixes else 'sqlite3'


def _distro_of(reader):
    distro = getattr(reader, 'ros_distro', None) or ''
    return 'humble' if distro == 'humble' else 'jazzy'


def _camera_infos(reader, types, info_topic):
    """(sorted header stamps in ns, messages) of every camera_info in the bag."""
    connections = [c for c in reader.connections if c.topic == info_topic]
    infos = []
    for connection, _time, raw in reader.messages(connections=connections):
        msg = types.deserialize(raw, connection.msgtype)
        infos.append((conversions.stamp_to_ns(msg.header.stamp), msg))
    infos.sort(key=lambda pair: pair[0])
    return [stamp for stamp, _ in infos], [msg for _, msg in infos]


def _closest_info(infos, stamp_ns):
    """The camera_info whose header stamp is closest to stamp_ns."""
    stamps, msgs = infos
    i = bisect.bisect_left(stamps, stamp_ns)
    candidates = [j for j in (i - 1, i) if 0 <= j < len(stamps)]
    return msgs[min(candidates, key=lambda j: abs(stamps[j] - stamp_ns))]


# --- writing ---------------------------------------------------------------------------------


def _storage_plugin(storage):
    from rosbags.rosbag2 import StoragePlugin  # deferred: as Writer above

    return StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3


def _add_connections(writer, reader, types, ns, debug_image, summary):
    """Connections of the output bag: the input's (conn.id -> out) and ours (role -> out)."""
    ours = output_topics(ns)
    if not debug_image:
        del ours['debug_image']
    our_topics = dict(ours.values())
    copies, by_topic = {}, {}
    for conn in reader.connections:
        key = (conn.topic, conn.msgtype)
        if key in by_topic:
            copies[conn.id] = by_topic[key]
            continue
        if conn.topic in our_topics and not (conn.topic == '/tf'
                                             and conn.msgtype == our_topics['/tf']):
            summary.not_copied.append(f'{conn.topic} ({conn.msgtype}): replaced by the output')
            continue
        kwargs = {'serialization_format': conn.ext.serialization_format,
                  'offered_qos_profiles': conn.ext.offered_qos_profiles}
        msgdef = conn.msgdef.data if conn.msgdef is not None else ''
        if msgdef and conn.digest:
            kwargs.update(msgdef=msgdef, rihs01=conn.digest)
        elif conn.msgtype in types.typestore.fielddefs:
            kwargs.update(typestore=types.typestore)
        else:
            summary.not_copied.append(f'{conn.topic} ({conn.msgtype}): the bag has no message '
                                      'definition for it')
            continue
        copies[conn.id] = by_topic[key] = writer.add_connection(conn.topic, conn.msgtype,
                                                                **kwargs)
    outputs = {}
    for role, (topic, msgtype) in ours.items():
        outputs[role] = by_topic.get((topic, msgtype)) or writer.add_connection(
            topic, msgtype, typestore=types.typestore)
    return copies, outputs


def _process(reader, writer, copies, outputs, pipeline, types, infos, image_topic, summary,
             progress):
    total = reader.topics[image_topic].msgcount
    with tqdm(total=total, unit='frame', disable=not progress, desc='pose6d bag') as bar:
        for conn, timestamp, raw in reader.messages():
            if conn.id in copies:
                writer.write(copies[conn.id], timestamp, raw)
            if conn.topic != image_topic:
                continue
            summary.frames += 1
            bar.update(1)
            image = types.deserialize(raw, conn.msgtype)
            info = _closest_info(infos, conversions.stamp_to_ns(image.header.stamp))
            try:
                result = pipeline.process(image, info)
            except FrameError as exc:
                summary.errors[exc.reason] += 1
                summary.first_errors.setdefault(exc.reason, str(exc))
                continue
            summary.processed += 1
            summary.instances += len(result.poses)
            summary.network_runs += result.network_ran
            if pipeline.tracker is not None:
                summary.sources.update(pose.source for pose in result.poses)
            _write_outputs(writer, outputs, types, result, timestamp)


def _write_outputs(writer, outputs, types, result, timestamp):
    messages = {'poses': result.pose_array(), 'detections': result.detections(),
                'markers': result.markers()}
    if result.poses:
        messages['tf'] = result.tf_message()
    if 'debug_image' in outputs:
        messages['debug_image'] = result.debug_image()
    for role, message in messages.items():
        writer.write(outputs[role], timestamp, types.serialize(message))
