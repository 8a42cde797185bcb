r"""A USB camera, the pose6d node, the camera's place on the robot, and RViz.

    ros2 launch pose6d_ros webcam.launch.py                       # bundled demo model
    ros2 launch pose6d_ros webcam.launch.py model:=/path/to/bundle \
        camera_info_url:=file:///home/me/.ros/camera_info/webcam.yaml

    v4l2_camera_node (/camera)  --image_raw, camera_info-->  pose6d_node (/pose6d)
        poses, detections, markers, debug_image, TF <camera_frame> -> <object>_<k>
    static_transform_publisher: <base_frame> -> <camera_frame>
    rviz2 (config/pose6d.rviz, Fixed Frame base_link)

The camera's intrinsics come from camera_info_url. With the default empty url, v4l2_camera
publishes an uncalibrated camera_info whose K is all zeros; the node rejects those frames
with a warning ('camera_info ... zero K'), so nothing is detected until the camera is
calibrated: run `ros2 run camera_calibration cameracalibrator --size 8x6 --square 0.025
--ros-args -r image:=/camera/image_raw -p camera:=/camera` with a printed checkerboard and
press COMMIT (v4l2_camera then stores the calibration under ~/.ros/camera_info/ and loads it
at every start), or pass camera_info_url:=file:///path/to/calibration.yaml (docs/ros.md shows
how to make one).
"""

# ruff sorts `launch` as first-party (this folder is named launch/); keep the order that
# ament_flake8 (flake8-import-order, google style) wants.
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

CAMERA_NAMESPACE = 'camera'  # v4l2_camera publishes /camera/image_raw, /camera/camera_info
HALF_PI = '1.5707963267948966'

ARGUMENTS = (
    ('video_device', '/dev/video0', 'the V4L2 camera device'),
    ('image_size', '[640, 480]', 'capture width and height, a size the camera supports'),
    ('camera_info_url', '',
     "calibration file, e.g. file:///home/me/webcam.yaml; '' = the one stored by "
     'camera_calibration under ~/.ros/camera_info/, if any (otherwise K = 0: calibrate)'),
    ('camera_frame', 'camera_optical_frame',
     'frame_id of the images: the optical frame (x right, y down, z forward)'),
    ('base_frame', 'base_link', 'parent frame of the camera, and RViz fixed frame'),
    # Where the camera sits in base_frame (metres) and how it is turned (radians: roll about
    # x, then pitch about y, then yaw about z, all fixed axes of base_frame, as a URDF rpy).
    # The defaults, rpy (-pi/2 0 -pi/2), turn the optical frame (z forward, y down) to look
    # along +x of base_frame; a camera tilted down by a has roll -pi/2 - a, one turned left
    # by b has yaw -pi/2 + b.
    ('x', '0.0', 'camera position along base_frame x (m)'),
    ('y', '0.0', 'camera position along base_frame y (m)'),
    ('z', '0.0', 'camera position along base_frame z (m)'),
    ('roll', '-' + HALF_PI, 'camera optical frame roll in base_frame (rad)'),
    ('pitch', '0.0', 'camera optical frame pitch in base_frame (rad)'),
    ('yaw', '-' + HALF_PI, 'camera optical frame yaw in base_frame (rad)'),
    ('params_file', PathJoinSubstitution([FindPackageShare('pose6d_ros'), 'config',
                                          'pose6d.yaml']),
     'YAML file with the pose6d node parameters'),
    ('model', '', "model bundle folder; '' = the bundled demo model"),
    ('device', 'auto', "'auto' (CUDA when present), 'cpu' or 'cuda'"),
    ('onnx_model', '', "ONNX file of the model (pose6d export --format onnx-int8) run by "
                       "onnxruntime on the CPU; '' = PyTorch"),
    ('namespace', 'pose6d', 'namespace of the pose6d node and its outputs (config/pose6d.rviz '
                            'shows /pose6d/...)'),
    ('rviz', 'true', 'start RViz with config/pose6d.rviz (true/false)'),
)


def as_string(name):
    """A launch argument passed to a parameter as a string, even when empty or numeric."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def generate_launch_description():
    """The launch description `ros2 launch` runs."""
    camera_frame = LaunchConfiguration('camera_frame')
    camera = Node(
        package='v4l2_camera',
        executable='v4l2_camera_node',
        name='v4l2_camera',
        namespace=CAMERA_NAMESPACE,
        output='screen',
        parameters=[{
            'video_device': as_string('video_device'),
            'image_size': LaunchConfiguration('image_size'),  # a YAML list of two integers
            # An empty url gives an uncalibrated camera (K = 0), which the pose6d node
            # rejects with a warning: calibrate with `ros2 run camera_calibration
            # cameracalibrator` (see the docstring above and docs/ros.md), or give a file.
            'camera_info_url': as_string('camera_info_url'),
            'camera_frame_id': ParameterValue(camera_frame, value_type=str),
            'output_encoding': 'rgb8',
        }],
    )
    pose6d = Node(
        package='pose6d_ros',
        executable='pose6d_node',
        name='pose6d_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'),
                    {'model': as_string('model'), 'device': as_string('device'),
                     'onnx_model': as_string('onnx_model')}],
        remappings=[('image', f'/{CAMERA_NAMESPACE}/image_raw'),
                    ('image/compressed', f'/{CAMERA_NAMESPACE}/image_raw/compressed'),
                    ('camera_info', f'/{CAMERA_NAMESPACE}/camera_info')],
    )
    camera_on_base = Node(
        package='tf2_ros',
        executable='static_transform_publisher',
        name='camera_on_base',
        output='screen',
        arguments=['--x', LaunchConfiguration('x'), '--y', LaunchConfiguration('y'),
                   '--z', LaunchConfiguration('z'), '--roll', LaunchConfiguration('roll'),
                   '--pitch', LaunchConfiguration('pitch'), '--yaw', LaunchConfiguration('yaw'),
                   '--frame-id', LaunchConfiguration('base_frame'),
                   '--child-frame-id', camera_frame],
    )
    rviz = Node(
        package='rviz2',
        executable='rviz2',
        name='rviz2',
        output='screen',
        arguments=['-d', PathJoinSubstitution([FindPackageShare('pose6d_ros'), 'config',
                                               'pose6d.rviz']),
                   '-f', LaunchConfiguration('base_frame')],
        condition=IfCondition(LaunchConfiguration('rviz')),
    )
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [camera, camera_on_base, pose6d, rviz])
