"""Running a node until it is done or interrupted, with threads stopped before rclpy goes.

rclpy's own signal handlers shut the ROS context down the moment Ctrl-C arrives, while a
worker or capture thread may be publishing ('publisher's context is invalid', then a rosout
failure). Our executables start rclpy without them (`init`): Ctrl-C is then Python's
KeyboardInterrupt, raised in `spin_until_done`, SIGTERM is made the same, and `main` stops
the node's threads (destroy_node) before rclpy.try_shutdown().
"""

from __future__ import annotations

import signal

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions


def init(args=None):
    """rclpy.init without rclpy's signal handlers; Ctrl-C and SIGTERM raise KeyboardInterrupt."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def spin_until_done(node, finished=None):
    """Spin `node` until `finished` (an rclpy Future) is done, or Ctrl-C (KeyboardInterrupt).

    Short spins let the interrupt in while nothing arrives.
    """
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok() and not (finished is not None and finished.done()):
            executor.spin_once(timeout_sec=0.2)
    finally:
        executor.remove_node(node)
        executor.shutdown()
