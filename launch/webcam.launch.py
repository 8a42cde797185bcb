r"""A USB camera, the pose6d node, the camera's place on the robot, and RViz.

    ros2 launch pose6d_ros webcam.launch.py                       # bundled demo model
    ros2 launch pose6d_ros webcam.launch.py model:=/path/to/bundle \
        camera_info_url:=file:///home/me/webcam.yaml              # pose6d calibrate
    ros2 launch pose6d_ros webcam.launch.py video_device:=$HOME/clip.mp4 rviz:=false

    camera driver (/camera)  --image_raw, camera_info-->  pose6d_node (/pose6d)
        poses, detections, markers, debug_image, TF <camera_frame> -> <object>_<k>
    pose6d_static_transform_node: <base_frame> -> <camera_frame> on /tf_static
    rviz2 (config/pose6d.rviz, Fixed Frame base_link), with rviz:=true

The camera driver is pose6d_camera_node (driver:=python, the default): OpenCV capture in
Python, so that this launch runs with nothing but rclpy, launch and the message packages,
and the same node plays a video file or an image folder (video_device:=clip.mp4). It is the
default even where v4l2_camera is installed, so that the launch behaves the same on every
machine (a calibration missing means a rough K from field_of_view with a warning, never K = 0
and no poses); driver:=v4l2 runs v4l2_camera instead (V4L2 controls, less CPU).

The camera's intrinsics come from camera_info_url: `pose6d calibrate` makes the file
(docs/ros.md, "Camera calibration"). Without one, both drivers load what camera_calibration's
COMMIT stored under ~/.ros/camera_info/; failing that, the python driver publishes a rough K
from field_of_view and warns that distances will be off, and v4l2_camera publishes K = 0,
which the pose6d node refuses.
"""

# ruff sorts `launch` as first-party (this folder is named launch/); keep the order that
# ament_flake8 (flake8-import-order, google style) wants.
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
import yaml

CAMERA_NAMESPACE = 'camera'  # the driver publishes /camera/image_raw, /camera/camera_info
HALF_PI = '1.5707963267948966'
DRIVERS = ('python', 'v4l2')

ARGUMENTS = (
    ('driver', 'python',
     "camera driver: 'python' (pose6d_camera_node: a camera, a video file or an image folder) "
     "or 'v4l2' (v4l2_camera, when installed)"),
    ('video_device', '/dev/video0',
     'the camera (a V4L2 device); with driver:=python also a camera index, a video file or an '
     'image folder'),
    ('image_size', '[640, 480]',
     'capture width and height, a size the camera supports; python driver: other frames are '
     "resized to it, [0, 0] keeps the source's size"),
    ('fps', '0.0', 'python driver: frames per second asked of the camera, or the pace of a '
                   "file; 0 = the source's own rate"),
    ('loop', 'true', 'python driver: a video file or image folder starts again at its end'),
    ('camera_info_url', '',
     "calibration file, e.g. file:///home/me/webcam.yaml (pose6d calibrate); '' = what "
     'camera_calibration stored under ~/.ros/camera_info/, if any, else python driver: a '
     'rough K from field_of_view (distances will be off); v4l2: K = 0'),
    ('camera_name', 'camera',
     'python driver: the camera name, ${NAME} in camera_info_url, and the file name under '
     '~/.ros/camera_info/ (letters, digits, _)'),
    ('field_of_view', '60.0', "python driver with camera_info_url '': the camera's horizontal "
                              'field of view (degrees) for a rough K'),
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
    ('onnx_model', '', 'ONNX file of the model (pose6d export --format onnx-int8) run by '
                       "onnxruntime on the CPU; '' = PyTorch"),
    ('omp_wait_policy', 'PASSIVE',
     "OMP_WAIT_POLICY of the node's process: PASSIVE (OpenMP threads sleep while they wait; "
     "best on a CPU shared with other nodes), ACTIVE or '' (OpenMP's default: fastest on an "
     'otherwise idle CPU)'),
    ('namespace', 'pose6d', 'namespace of the pose6d node and its outputs (config/pose6d.rviz '
                            'shows /pose6d/...)'),
    ('rviz', 'true', 'start RViz with config/pose6d.rviz (true/false)'),
)


def as_string(name):
    """A launch argument passed to a parameter as a string, even when empty or numeric."""
    return ParameterValue(LaunchConfiguration(name), value_type=str)


def as_float(name):
    """A launch argument passed to a double parameter ('0' becomes 0.0)."""
    return ParameterValue(LaunchConfiguration(name), value_type=float)


def image_size(context):
    """The image_size argument as [width, height] (YAML, never eval); a clear error if bad."""
    text = LaunchConfiguration('image_size').perform(context)
    try:
        size = yaml.safe_load(text)
    except yaml.YAMLError:
        size = None
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise ValueError(f'image_size:={text!r}: expected [width, height] in pixels, e.g. '
                         "'[640, 480]'")
    return size


def camera_driver(context):
    """The camera driver node that the driver argument names (an OpaqueFunction)."""
    driver = LaunchConfiguration('driver').perform(context)
    width, height = image_size(context)
    camera_frame = ParameterValue(LaunchConfiguration('camera_frame'), value_type=str)
    if driver == 'python':
        return [Node(
            package='pose6d_ros',
            executable='pose6d_camera_node',
            name='camera',
            namespace=CAMERA_NAMESPACE,
            output='screen',
            emulate_tty=True,
            parameters=[{
                'source': as_string('video_device'),
                'camera_info_url': as_string('camera_info_url'),
                'camera_name': as_string('camera_name'),
                'field_of_view': as_float('field_of_view'),
                'frame_id': camera_frame,
                'width': width,
                'height': height,
                'fps': as_float('fps'),
                'loop': ParameterValue(LaunchConfiguration('loop'), value_type=bool),
            }],
        )]
    if driver == 'v4l2':
        return [Node(
            package='v4l2_camera',
            executable='v4l2_camera_node',
            name='v4l2_camera',
            namespace=CAMERA_NAMESPACE,
            output='screen',
            parameters=[{
                'video_device': as_string('video_device'),
                'image_size': [width, height],
                # An empty url: what camera_calibration stored, else K = 0 (refused by the
                # pose6d node with a warning).
                'camera_info_url': as_string('camera_info_url'),
                'camera_frame_id': camera_frame,
                'output_encoding': 'rgb8',
            }],
        )]
    raise ValueError(f'driver:={driver!r}: expected one of {", ".join(DRIVERS)}')


def generate_launch_description():
    """The launch description `ros2 launch` runs."""
    pose6d = Node(
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
                     'onnx_model': as_string('onnx_model')}],
        remappings=[('image', f'/{CAMERA_NAMESPACE}/image_raw'),
                    ('image/compressed', f'/{CAMERA_NAMESPACE}/image_raw/compressed'),
                    ('camera_info', f'/{CAMERA_NAMESPACE}/camera_info')],
    )
    camera_on_base = Node(
        package='pose6d_ros',
        executable='pose6d_static_transform_node',
        name='camera_on_base',
        output='screen',
        parameters=[{
            'parent_frame': as_string('base_frame'),
            'child_frame': as_string('camera_frame'),
            'x': as_float('x'),
            'y': as_float('y'),
            'z': as_float('z'),
            'roll': as_float('roll'),
            'pitch': as_float('pitch'),
            'yaw': as_float('yaw'),
        }],
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
        + [OpaqueFunction(function=camera_driver), camera_on_base, pose6d, rviz])
