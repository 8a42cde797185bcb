"""The ROS side of pose6d_ros: message conversions, the per-frame pipeline, the bag tool, the node.

Only `node` imports rclpy; `conversions`, `pipeline` and `bag` work without a ROS install.
"""
