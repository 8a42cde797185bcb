"""The node's parameter table (parameters.py) agrees with the files that repeat it.

Those are config/pose6d.yaml, docs/ros.md, the launch files, the RViz config and package.xml.
No ROS install needed (the launch descriptions are built where launch / launch_ros are
importable).
"""

import ast
from dataclasses import fields
import importlib
import importlib.util
import math
from pathlib import Path
import py_compile
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from pose6d_ros.ros import parameters
from pose6d_ros.ros.parameters import (
    CAMERA_PARAMETERS,
    PARAMETERS,
    RUNTIME_PARAMETERS,
    STATIC_TRANSFORM_PARAMETERS,
    validate,
)
from pose6d_ros.ros.pipeline import PipelineConfig

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = {name: ROOT / 'launch' / name for name in ('pose6d.launch.py', 'webcam.launch.py')}
NODE_OUTPUTS = ('poses', 'detections', 'markers', 'debug_image')


# --- parameters.py --------------------------------------------------------------------------

def test_every_default_is_valid_and_every_limit_fits_its_type():
    for name, spec in PARAMETERS.items():
        assert spec.name == name
        assert spec.description.strip(), name
        assert spec.type in (bool, int, float, str), name
        assert validate(name, spec.default) is None, name
        assert not (spec.range and spec.choices), name
        if spec.range is not None:
            low, high = spec.range
            assert spec.type in (int, float) and type(low) is type(high) is spec.type, name
            assert low <= spec.default <= high or spec.default == spec.sentinel, name
        if spec.choices is not None:
            assert spec.type is str and spec.default in spec.choices, name


def test_runtime_parameters_are_the_writable_ones_and_map_to_pipeline_fields():
    writable = {name for name, spec in PARAMETERS.items() if not spec.read_only}
    assert set(RUNTIME_PARAMETERS) == writable
    pipeline_fields = {f.name: f.default for f in fields(PipelineConfig)}
    for name, field in RUNTIME_PARAMETERS.items():
        if field is None:
            continue
        assert field in pipeline_fields, (name, field)
        default = PARAMETERS[name].default
        if name == 'objects':  # a comma-separated string here, a tuple in the pipeline
            assert default == '' and pipeline_fields[field] == ()
        else:
            assert default == pipeline_fields[field], name


@pytest.mark.parametrize('name, value, words', [
    ('min_score', 1.5, ['min_score', '[0.0, 1.0]']),
    ('min_score', -0.1, ['min_score', 'or -1.0']),   # only -1 (the model's) below 0
    ('min_score', -2.0, ['min_score']),
    ('min_score', math.nan, ['min_score']),
    ('min_score', 1, ['double', 'write 1.0']),            # ROS has no int for a double
    ('qos_depth', 0, ['qos_depth', '[1, 100]']),
    ('qos_depth', 2.0, ['qos_depth', 'int']),
    ('qos_depth', True, ['int', 'bool']),                 # bool is an int only in Python
    ('publish_tf', 1, ['publish_tf', 'bool']),
    ('sync_slop', 0.0, ['sync_slop']),
    ('marker_lifetime', 61.0, ['marker_lifetime']),
    ('device', 'gpu', ["'gpu'", "'auto', 'cpu', 'cuda'"]),
    ('image_transport', 'theora', ['image_transport', "'compressed'"]),
    ('qos_reliability', 'RELIABLE', ['qos_reliability']),
    ('target_frame', '/base_link', ['target_frame', 'leading slash']),
    ('target_frame', 'base link', ['target_frame']),
    ('frame_prefix', 'has space/', ['frame_prefix']),
    ('model', None, ['model', 'string']),
    ('no_such_parameter', 1.0, ['no_such_parameter', 'min_score']),
])
def test_validate_rejects_a_bad_value_with_a_reason(name, value, words):
    reason = validate(name, value)
    assert reason, (name, value)
    for word in words:
        assert word in reason, (word, reason)


@pytest.mark.parametrize('name, value', [
    ('min_score', 0.0), ('min_score', 1.0), ('min_score', -1.0), ('qos_depth', 100),
    ('sync_slop', 0.001),
    ('device', 'cuda'), ('image_transport', 'compressed'), ('qos_reliability', 'reliable'),
    ('target_frame', 'base_link'), ('target_frame', 'robot1/base_link'), ('target_frame', ''),
    ('frame_prefix', 'cam1/'), ('objects', 'mug, box'), ('model', '/models/mug'),
    ('publish_tf', False), ('max_reprojection_error', 1000.0),
])
def test_validate_accepts_a_good_value(name, value):
    assert validate(name, value) is None


def test_parameters_module_never_imports_ros():
    code = ('import sys\n'
            'import pose6d_ros.ros.parameters\n'
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'rcl_interfaces', 'launch', 'launch_ros') or m.endswith('_msgs'))\n"
            'assert not bad, bad\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr


# --- config/pose6d.yaml ---------------------------------------------------------------------

def test_params_file_has_exactly_every_parameter_with_its_default():
    data = yaml.safe_load((ROOT / 'config' / 'pose6d.yaml').read_text())
    assert list(data) == ['/**'], 'one section for any node name and namespace'
    values = data['/**']['ros__parameters']
    assert sorted(values) == sorted(PARAMETERS), set(values) ^ set(PARAMETERS)
    for name, value in values.items():
        spec = PARAMETERS[name]
        # ROS 2 refuses 1 for a double parameter and 'true' for a string one: exact types.
        assert type(value) is spec.type, (name, value, spec.type_name)
        assert value == spec.default, (name, value, spec.default)
        assert validate(name, value) is None, name


def test_params_file_comments_every_parameter():
    lines = (ROOT / 'config' / 'pose6d.yaml').read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r'^    (\w+):', line)
        if match:
            assert lines[i - 1].strip().startswith('#'), f'no comment above {match[1]}'


# --- docs/ros.md ----------------------------------------------------------------------------

def _docs_table():
    text = (ROOT / 'docs' / 'ros.md').read_text()
    match = re.search(r'<!-- parameters:[^\n]*-->\n(.*?)\n<!-- end of parameters -->', text,
                      re.S)
    assert match, 'docs/ros.md has no generated parameter table'
    return match[1]


def test_docs_table_lists_exactly_the_parameters_with_their_defaults():
    rows = {}
    for line in _docs_table().splitlines()[2:]:
        cells = [c.strip() for c in line.strip('|').split(' | ')]
        rows[cells[0].strip('`')] = (cells[1], yaml.safe_load(cells[2].strip('`')))
    assert list(rows) == list(PARAMETERS), set(rows) ^ set(PARAMETERS)
    for name, (type_name, default) in rows.items():
        spec = PARAMETERS[name]
        assert type_name == spec.type_name, name
        assert type(default) is spec.type and default == spec.default, (name, default)


def test_docs_table_is_the_generated_one():
    assert _docs_table() == parameters.markdown_table(), (
        'docs/ros.md is out of date: paste the output of python -m pose6d_ros.ros.parameters')


@pytest.mark.parametrize('name', ['camera', 'static_transform'])
def test_docs_tables_of_the_webcam_nodes_are_the_generated_ones(name):
    text = (ROOT / 'docs' / 'ros.md').read_text()
    match = re.search(rf'<!-- {name} parameters:[^\n]*-->\n(.*?)\n<!-- end of {name} '
                      r'parameters -->', text, re.S)
    assert match, f'docs/ros.md has no generated {name} parameter table'
    assert match[1] == parameters.markdown_table(parameters.TABLES[name]), (
        f'docs/ros.md is out of date: paste python -m pose6d_ros.ros.parameters {name}')


@pytest.mark.parametrize('name', sorted(LAUNCH_FILES))
def test_docs_list_every_launch_argument(name):
    """The argument table under the launch file's heading names exactly its arguments."""
    text = (ROOT / 'docs' / 'ros.md').read_text()
    section = re.split(r'\n#{2,3} ', text.split(f'### `{name}`', 1)[1], maxsplit=1)[0]
    rows = [line for line in section.splitlines() if line.startswith('| `')]
    documented = {arg for row in rows for arg in re.findall(r'`(\w+)`', row.split(' | ')[0])}
    assert documented == set(_launch_arguments(name)), documented ^ set(_launch_arguments(name))


# --- launch files ---------------------------------------------------------------------------

def _launch_tree(name):
    return ast.parse(LAUNCH_FILES[name].read_text(), filename=name)


def _launch_arguments(name):
    """{argument: default} of ARGUMENTS in a launch file (None where not a plain string)."""
    for node in ast.walk(_launch_tree(name)):
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', '') == 'ARGUMENTS'
                                                for t in node.targets):
            out = {}
            for item in node.value.elts:
                default = item.elts[1]
                if isinstance(default, ast.BinOp):  # '-' + HALF_PI
                    default = None
                elif isinstance(default, ast.Constant):
                    default = default.value
                else:
                    default = None
                out[item.elts[0].value] = default
            return out
    raise AssertionError(f'{name} has no ARGUMENTS table')


def _launched_nodes(name):
    """(package, executable, {parameter: ast value}) of every launch_ros Node in a file."""
    out = []
    for node in ast.walk(_launch_tree(name)):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'Node':
            keywords = {k.arg: k.value for k in node.keywords}
            params = {}
            for item in getattr(keywords.get('parameters'), 'elts', []):
                if isinstance(item, ast.Dict):
                    params.update({k.value: v for k, v in zip(item.keys, item.values)
                                   if isinstance(k, ast.Constant)})
            out.append((keywords['package'].value, keywords['executable'].value, params))
    return out


def _launched_packages(name):
    """{package: {executables}} of every launch_ros Node in a launch file."""
    out = {}
    for package, executable, _ in _launched_nodes(name):
        out.setdefault(package, set()).add(executable)
    return out


@pytest.mark.parametrize('name', sorted(LAUNCH_FILES))
def test_launch_file_compiles_and_uses_no_eval_or_installs(name, tmp_path):
    py_compile.compile(str(LAUNCH_FILES[name]), cfile=str(tmp_path / 'out.pyc'), doraise=True)
    calls = {getattr(n.func, 'id', getattr(n.func, 'attr', '')) for n in
             ast.walk(_launch_tree(name)) if isinstance(n, ast.Call)}
    assert not calls & {'eval', 'exec', 'system', 'Popen', 'run', 'check_call'}, calls
    assert not re.search(r'\bpip3?\b|apt(-get)? install', LAUNCH_FILES[name].read_text())


def test_launch_arguments():
    node_args = _launch_arguments('pose6d.launch.py')
    assert set(node_args) == {'params_file', 'model', 'device', 'onnx_model', 'namespace',
                              'image_topic', 'camera_info_topic', 'image_transport',
                              'omp_wait_policy'}
    assert node_args['image_topic'] == '/camera/image_raw'
    assert node_args['camera_info_topic'] == '/camera/camera_info'
    webcam_args = _launch_arguments('webcam.launch.py')
    assert {'driver', 'video_device', 'image_size', 'fps', 'loop', 'camera_info_url',
            'camera_name', 'field_of_view', 'camera_frame', 'base_frame', 'x', 'y', 'z',
            'roll', 'pitch', 'yaw', 'model', 'device', 'onnx_model', 'namespace', 'params_file',
            'rviz', 'omp_wait_policy'} == set(webcam_args)
    assert webcam_args['video_device'] == '/dev/video0'
    assert webcam_args['driver'] == 'python'     # needs no C++ camera driver
    assert float(webcam_args['field_of_view']) == CAMERA_PARAMETERS['field_of_view'].default
    assert webcam_args['camera_frame'] == CAMERA_PARAMETERS['frame_id'].default
    assert webcam_args['camera_name'] == CAMERA_PARAMETERS['camera_name'].default
    assert webcam_args['base_frame'] == 'base_link'
    for args in (node_args, webcam_args):
        assert args['model'] == '' and args['namespace'] == 'pose6d'
        assert args['omp_wait_policy'] == 'PASSIVE'
        assert args['device'] == PARAMETERS['device'].default
        assert args['onnx_model'] == PARAMETERS['onnx_model'].default
    assert node_args['image_transport'] == PARAMETERS['image_transport'].default
    assert yaml.safe_load(webcam_args['image_size']) == [640, 480]


def test_default_camera_pose_looks_forward_with_the_optical_frame():
    from scipy.spatial.transform import Rotation

    source = LAUNCH_FILES['webcam.launch.py'].read_text()
    half_pi = float(re.search(r"HALF_PI = '([0-9.]+)'", source)[1])
    assert half_pi == pytest.approx(math.pi / 2)
    # static_transform_publisher: R = Rz(yaw) Ry(pitch) Rx(roll), parent base, child optical.
    R = Rotation.from_euler('xyz', [-half_pi, 0.0, -half_pi]).as_matrix()
    assert R @ [0, 0, 1] == pytest.approx([1, 0, 0])    # optical z (forward) -> base x
    assert R @ [1, 0, 0] == pytest.approx([0, -1, 0])   # optical x (right) -> base -y
    assert R @ [0, 1, 0] == pytest.approx([0, 0, -1])   # optical y (down) -> base -z


def _load_launch(name):
    spec = importlib.util.spec_from_file_location(name.replace('.', '_'), LAUNCH_FILES[name])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


HAS_LAUNCH = all(importlib.util.find_spec(m) is not None for m in ('launch', 'launch_ros'))


@pytest.mark.skipif(not HAS_LAUNCH, reason='launch / launch_ros are not installed (no ROS 2); '
                                           'the launch descriptions are built where they are')
@pytest.mark.parametrize('name', sorted(LAUNCH_FILES))
def test_generate_launch_description(name):
    # importlib: ruff would sort `launch` as first-party, this repository having a launch/.
    launch = importlib.import_module('launch')
    node_type = importlib.import_module('launch_ros.actions').Node

    description = _load_launch(name)
    assert isinstance(description, launch.LaunchDescription)
    declared = {e.name for e in description.entities
                if isinstance(e, launch.actions.DeclareLaunchArgument)}
    assert declared == set(_launch_arguments(name))
    assert any(isinstance(e, node_type) for e in description.entities)


# --- RViz and package.xml -------------------------------------------------------------------

def _rviz_topics(tree):
    if isinstance(tree, dict):
        topic = tree.get('Topic')
        found = [topic['Value']] if isinstance(topic, dict) and 'Value' in topic else []
        return found + [t for v in tree.values() for t in _rviz_topics(v)]
    if isinstance(tree, list):
        return [t for v in tree for t in _rviz_topics(v)]
    return []


def test_rviz_config_shows_the_node_outputs_under_the_launch_namespace():
    config = yaml.safe_load((ROOT / 'config' / 'pose6d.rviz').read_text())
    manager = config['Visualization Manager']
    displays = {d['Class']: d for d in manager['Displays']}
    for display in ('Grid', 'TF', 'MarkerArray', 'Image'):
        assert f'rviz_default_plugins/{display}' in displays, display
    assert manager['Global Options']['Fixed Frame'] == \
        _launch_arguments('webcam.launch.py')['base_frame']
    topics = _rviz_topics(manager['Displays'])
    namespace = '/' + _launch_arguments('webcam.launch.py')['namespace']
    for output in ('markers', 'debug_image', 'poses'):
        assert f'{namespace}/{output}' in topics, output
    assert _launch_arguments('pose6d.launch.py')['image_topic'] in topics
    assert set(_rviz_topics(manager['Displays'])) <= (
        {f'{namespace}/{o}' for o in NODE_OUTPUTS} | {'/camera/image_raw'})


def test_webcam_launch_feeds_the_node_what_the_camera_publishes():
    source = LAUNCH_FILES['webcam.launch.py'].read_text()
    assert re.search(r"CAMERA_NAMESPACE = 'camera'", source)
    assert "('image', f'/{CAMERA_NAMESPACE}/image_raw')" in source
    assert "('camera_info', f'/{CAMERA_NAMESPACE}/camera_info')" in source


def test_package_xml_lists_the_packages_the_launch_files_run():
    root = ET.parse(ROOT / 'package.xml').getroot()
    depends = {e.text for tag in ('exec_depend', 'depend') for e in root.findall(tag)}
    launched = {}
    for name in LAUNCH_FILES:
        for package, executables in _launched_packages(name).items():
            launched.setdefault(package, set()).update(executables)
    assert launched == {'pose6d_ros': {'pose6d_node', 'pose6d_camera_node',
                                       'pose6d_static_transform_node'},
                        'v4l2_camera': {'v4l2_camera_node'}, 'rviz2': {'rviz2'}}
    # v4l2_camera runs only with driver:=v4l2: optional, so the launch needs no C++ driver
    missing = set(launched) - {'pose6d_ros', 'v4l2_camera'} - depends
    assert not missing, missing
    assert {'launch', 'launch_ros', 'ament_index_python', 'rclpy', 'tf2_ros_py',
            'sensor_msgs'} <= depends
    assert 'v4l2_camera' not in depends and 'tf2_ros' not in depends


def test_setup_installs_every_executable_the_launch_files_run():
    setup = (ROOT / 'setup.py').read_text()
    scripts = dict(re.findall(r"'(\w+) = (pose6d_ros[\w.]+:\w+)'", setup))
    for name in LAUNCH_FILES:
        for executable in _launched_packages(name).get('pose6d_ros', ()):
            module, function = scripts[executable].split(':')   # the module needs rclpy
            path = ROOT / (module.replace('.', '/') + '.py')
            assert f'def {function}(' in path.read_text(), scripts[executable]


def test_webcam_launch_passes_only_the_parameters_its_nodes_declare():
    nodes = {executable: params for package, executable, params
             in _launched_nodes('webcam.launch.py') if package == 'pose6d_ros'}
    assert set(nodes['pose6d_camera_node']) == set(CAMERA_PARAMETERS)
    assert set(nodes['pose6d_static_transform_node']) == set(STATIC_TRANSFORM_PARAMETERS)
    assert set(nodes['pose6d_node']) <= set(PARAMETERS)


def test_setup_installs_the_launch_and_config_files():
    setup = (ROOT / 'setup.py').read_text()
    assert "glob('launch/*.py')" in setup
    assert "glob('config/*.yaml') + glob('config/*.rviz')" in setup
    for path in ('config/pose6d.yaml', 'config/pose6d.rviz', *LAUNCH_FILES.values()):
        assert (ROOT / path).is_file(), path


@pytest.mark.parametrize('name', sorted(LAUNCH_FILES))
def test_the_node_process_gets_the_openmp_wait_policy_of_the_launch_argument(name):
    """The launch file, not the node, sets OMP_WAIT_POLICY.

    OpenMP reads it once, when torch loads: it must be in the process's environment from the
    start.
    """
    found = []
    for node in ast.walk(_launch_tree(name)):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'Node':
            keywords = {k.arg: k.value for k in node.keywords}
            if keywords['executable'].value != 'pose6d_node':
                continue
            env = keywords['additional_env']
            (key,), (value,) = env.keys, env.values
            found.append((key.value, value.func.id, value.args[0].value))
    assert found == [('OMP_WAIT_POLICY', 'LaunchConfiguration', 'omp_wait_policy')]
