"""pose6d_ros.core must work without ROS: it never imports rclpy or any message package."""

import ast
from pathlib import Path
import subprocess
import sys

CORE = Path(__file__).resolve().parents[1] / 'pose6d_ros' / 'core'
ROS_MODULES = ('rclpy', 'rosbags', 'cv_bridge', 'tf2_ros', 'tf2_py', 'message_filters',
               'launch', 'launch_ros', 'launch_testing', 'rosidl_runtime_py', 'builtin_interfaces')


def is_ros_module(name):
    top = name.split('.')[0]
    return top in ROS_MODULES or top.endswith('_msgs') or top.endswith('_srvs')


def test_no_ros_import_anywhere_in_the_core_source():
    """Static check: also catches imports inside functions that a plain import never runs."""
    offenders = []
    for path in sorted(CORE.rglob('*.py')):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f'{path.relative_to(CORE)}:{node.lineno} {n}'
                          for n in names if is_ros_module(n)]
    assert not offenders, f'ROS imports in pose6d_ros/core: {offenders}'


BLOCKER = """
import importlib.abc, pkgutil, sys

BLOCKED = {blocked!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split('.')[0]
        if top in BLOCKED or top.endswith('_msgs') or top.endswith('_srvs'):
            raise ImportError(f'{{name}} is blocked: pose6d_ros.core must not import ROS')
        return None

sys.meta_path.insert(0, Blocker())
import pose6d_ros.core
for module in pkgutil.walk_packages(pose6d_ros.core.__path__, 'pose6d_ros.core.'):
    __import__(module.name)
leaked = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED or m.endswith('_msgs'))
assert not leaked, leaked
print('imported', len([m for m in sys.modules if m.startswith('pose6d_ros.core')]), 'modules')
"""


def test_every_core_module_imports_with_ros_made_unimportable():
    code = BLOCKER.format(blocked=set(ROS_MODULES))
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=CORE.parents[1], timeout=600)
    assert result.returncode == 0, result.stderr
    assert 'imported' in result.stdout
