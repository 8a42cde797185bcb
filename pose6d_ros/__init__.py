"""pose6d_ros: real-time 6D object pose from one RGB camera, for ROS 2.

`pose6d_ros.core` is the ROS-free part (geometry, data, networks, training, evaluation);
`pose6d_ros.ros` is the thin rclpy glue.
"""

__version__ = '0.1.0'
