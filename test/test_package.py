"""The ROS 2 manifest and the pip/colcon install layout agree with what the node needs."""

from pathlib import Path
import xml.etree.ElementTree as ET

ROOT = Path(__file__).resolve().parents[1]
# tf2_ros_py is the package of the Python tf2_ros; the C++ tf2_ros does not bring it.
NODE_RUNTIME = {'rclpy', 'sensor_msgs', 'geometry_msgs', 'visualization_msgs', 'vision_msgs',
                'tf2_ros_py', 'tf2_msgs', 'cv_bridge', 'message_filters', 'launch',
                'launch_ros', 'python3-numpy', 'python3-opencv', 'python3-scipy',
                'python3-yaml'}


def test_package_xml_is_format_3_ament_python_with_every_runtime_dependency():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.tag == 'package' and root.get('format') == '3'
    assert root.findtext('name') == 'pose6d_ros'
    assert root.find('export/build_type').text == 'ament_python'
    exec_depends = {e.text for e in root.findall('exec_depend')} | {
        e.text for e in root.findall('depend')}
    assert NODE_RUNTIME <= exec_depends, NODE_RUNTIME - exec_depends
    test_depends = {e.text for e in root.findall('test_depend')}
    assert {'python3-pytest', 'ament_flake8', 'ament_pep257'} <= test_depends


def test_version_matches_between_manifest_setup_and_package():
    import pose6d_ros

    version = ET.parse(ROOT / 'package.xml').getroot().findtext('version')
    assert version == pose6d_ros.__version__
    assert f"version='{version}'" in (ROOT / 'setup.py').read_text()


def test_ament_index_marker_and_constraints_pin_torch():
    assert (ROOT / 'resource' / 'pose6d_ros').is_file()
    constraints = (ROOT / 'constraints.txt').read_text().split()
    assert 'torch==2.13.0' in constraints
