"""pose6d_ros: real-time 6D object pose from one RGB camera, for ROS 2.

`pose6d_ros.core` is the ROS-free library, in layers that import only downwards: geometry,
data, nets, inference, training. `pose6d_ros.tools` is the `pose6d` command built on it, and
`pose6d_ros.ros` the thin rclpy glue.
"""

import os

__version__ = '0.1.0'

# PyTorch's OpenMP threads spin while they wait for work. On a robot's CPU, shared with the
# camera driver and other nodes, a spinning thread holds a core that the thread it waits for
# needs: the keypoints network at 320x240 took 0.9-2.4 s a frame on 2 threads beside other
# busy processes, against 30 ms with sleeping threads (see cpus.py). OpenMP reads this once,
# when PyTorch loads, so it is set here, before anything of ours imports torch; a value the
# user set is kept.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
