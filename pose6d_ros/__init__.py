"""pose6d_ros: real-time 6D object pose from one RGB camera, for ROS 2.

`pose6d_ros.core` is the ROS-free library, in layers that import only downwards: geometry,
data, nets, inference, training. `pose6d_ros.tools` is the `pose6d` command built on it, and
`pose6d_ros.ros` the thin rclpy glue.
"""

__version__ = '0.1.0'
