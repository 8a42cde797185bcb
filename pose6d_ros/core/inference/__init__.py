"""The inference path: bundles, the estimator, the ONNX path and exports, evaluation."""
