"""The ROS side of the parameter tables (parameters.py): descriptors, declaration, changes.

Shared by the pose6d node, the camera node and the static transform node, so that all three
describe their parameters (`ros2 param describe`), refuse a bad start-up value with one line
naming the parameter, the value and where to fix it, and answer `ros2 param set` with the
reason.
"""

from __future__ import annotations

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.ros.parameters import read_only_reason, startup_reason, validate

_PARAMETER_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                    float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def parameter_descriptor(spec):
    """The ParameterDescriptor of a ParameterSpec: type, description, range or choices.

    ROS itself refuses values of the wrong type or out of range. `read_only` stays false on
    purpose: rclpy answers a read-only parameter before any callback, with its generic
    'Trying to set a read-only parameter'; `refused_change` says instead that the parameter is
    fixed at start-up and how to set it, and the description says it too.
    """
    description = spec.description + ('; fixed at start-up' if spec.read_only else '')
    descriptor = ParameterDescriptor(name=spec.name, type=_PARAMETER_TYPES[spec.type],
                                     description=description)
    if spec.range is not None and spec.type is float:
        # ROS checks one interval: a sentinel below it widens it, and `validate` refuses what
        # lies between (the parameters callback answers with its reason).
        low = spec.range[0] if spec.sentinel is None else min(spec.range[0], spec.sentinel)
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(low), to_value=float(spec.range[1]), step=0.0)]
    elif spec.range is not None:
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    elif spec.choices is not None or spec.frame_id or spec.camera_name or spec.required:
        descriptor.additional_constraints = spec.constraints()
    return descriptor


def declare_parameters(node, table):
    """Declare every parameter of `table` on `node`; a bad start-up value is a Pose6dError.

    A value ROS refuses (wrong type, out of range) is read back by declaring the parameter
    again without constraints, so that the message can name it.
    """
    for name, spec in table.items():
        try:
            value = node.declare_parameter(name, spec.default, parameter_descriptor(spec)).value
        except ParameterException:
            given = node.declare_parameter(
                name, spec.default, ParameterDescriptor(dynamic_typing=True)).value
            raise Pose6dError(startup_reason(name, given, table)) from None
        if validate(name, value, table) is not None:
            raise Pose6dError(startup_reason(name, value, table))


def refused_change(parameters, table):
    """A SetParametersResult refusing the first bad change of `parameters`, or None if none is.

    A read-only parameter is refused with how to set it at start-up; a bad value with the
    reason. Parameters outside the table (use_sim_time, ...) are left to ROS.
    """
    for parameter in parameters:
        spec = table.get(parameter.name)
        if spec is None:
            continue
        if spec.read_only:
            return SetParametersResult(successful=False,
                                       reason=read_only_reason(parameter.name))
        reason = validate(parameter.name, parameter.value, table)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return None
