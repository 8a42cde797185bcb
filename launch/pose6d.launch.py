r"""The pose6d node alone, for a camera that is already running.

    ros2 launch pose6d_ros pose6d.launch.py model:=/path/to/bundle \
        image_topic:=/my_camera/image_raw camera_info_topic:=/my_camera/camera_info

Outputs go to <namespace>/poses, detections, markers, debug_image (default /pose6d/...) and
TF. Parameters come from `params_file` (default: the installed config/pose6d.yaml); the
`model`, `device`, `onnx_model` and `image_transport` launch arguments override the file's
values.
"""

# ruff sorts `launch` as first-party (this folder is named launch/); keep the order that
# ament_flake8 (flake8-import-order, google style) wants.
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ('params_file', PathJoinSubstitution([FindPackageShare('pose6d_ros'), 'config',
                                          'pose6d.yaml']),
     'YAML file with the node parameters (see config/pose6d.yaml)'),
    ('model', '', "model bundle folder; '' = the bundled demo model"),
    ('device', 'auto', "'auto' (CUDA when present), 'cpu' or 'cuda'"),
    ('onnx_model', '', 'ONNX file of the model (pose6d export --format onnx-int8) run by '
                       "onnxruntime on the CPU; '' = PyTorch"),
    ('image_transport', 'raw',
     "'raw' subscribes image_topic, 'compressed' subscribes <image_topic>/compressed"),
    ('omp_wait_policy', 'PASSIVE',
     "OMP_WAIT_POLICY of the node's process: PASSIVE (OpenMP threads sleep while they wait; "
     "best on a CPU shared with other nodes), ACTIVE or '' (OpenMP's default: fastest on an "
     'otherwise idle CPU)'),
    ('namespace', 'pose6d', "namespace of the node and its output topics ('' for none)"),
    ('image_topic', '/camera/image_raw', 'the camera image (sensor_msgs/Image)'),
    ('camera_info_topic', '/camera/camera_info',
     'the camera calibration (sensor_msgs/CameraInfo)'),
)


def as_string(name):
    """A launch argument passed to a parameter as a string, even when empty or numeric."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def generate_launch_description():
    """The launch description `ros2 launch` runs."""
    image_topic = LaunchConfiguration('image_topic')
    node = Node(
        package='pose6d_ros',
        executable='pose6d_node',
        name='pose6d_node',
        # On a robot's CPU, shared with the camera driver and other nodes, spinning OpenMP
        # threads take the cores the network's other threads wait for (docs/ros.md, "Slow
        # on a CPU").
        additional_env={'OMP_WAIT_POLICY': LaunchConfiguration('omp_wait_policy')},
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'),
                    {'model': as_string('model'), 'device': as_string('device'),
                     'onnx_model': as_string('onnx_model'),
                     'image_transport': as_string('image_transport')}],
        # The node's inputs are relative names (image, image/compressed, camera_info); a
        # remapping matches one whole name, so the compressed topic needs its own rule.
        remappings=[('image', image_topic),
                    ('image/compressed', [image_topic, '/compressed']),
                    ('camera_info', LaunchConfiguration('camera_info_topic'))],
    )
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS] + [node])
