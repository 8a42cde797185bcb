"""`pose6d export`: a network as ONNX, fp32 (onnx_export.py) or int8 (quantize.py).

`export_model` chooses by format; both write under a temporary name and move the file into
place only once it has passed its check.
"""

from __future__ import annotations

from pose6d_ros.core.errors import Pose6dError
from pose6d_ros.core.inference import quantize
from pose6d_ros.core.inference.onnx_export import (
    DEFAULT_OPSET,
    export_onnx,
    ExportResult,
    PARITY_TOLERANCE,
)

FORMATS = ('onnx', 'onnx-int8')


def export_model(bundle_path, fmt='onnx', out=None, opset=DEFAULT_OPSET, dynamic_batch=False,
                 force=False, tolerance=PARITY_TOLERANCE, log=None, **int8_options):
    """Export a bundle's network; see the module docstring. Returns an ExportResult.

    out defaults to `<bundle>/model.onnx`. The file is written under a temporary name and
    moved into place only when the parity check passes (max abs difference < tolerance);
    otherwise a Pose6dError gives the differences. 'onnx-int8' is quantize.export_int8 (its
    options in `int8_options`; batch 1), returning a QuantizeResult.
    """
    if fmt not in FORMATS:
        raise Pose6dError(f'unknown export format {fmt!r}; expected one of {", ".join(FORMATS)}')
    if fmt == 'onnx-int8':
        return quantize.export_int8(bundle_path, out, opset=opset, force=force, log=log,
                                    **int8_options)
    return export_onnx(bundle_path, out, opset, dynamic_batch, force, tolerance, log)


def format_result(result):
    """The lines `pose6d export` prints."""
    if not isinstance(result, ExportResult):   # an int8 export
        return quantize.format_result(result)
    return (f'ONNX model: {result.path}\n'
            f'outputs: {", ".join(result.output_names)}; parity checked on input '
            f'{"x".join(str(v) for v in result.input_shape)}: max abs difference '
            f'{result.max_abs_diff:.2e} (< {result.tolerance:g}); {result.seconds:.1f} s')
