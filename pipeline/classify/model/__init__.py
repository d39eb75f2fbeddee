"""Serving: the architecture, its labels and text, loading and storing a model directory, the runtime, prediction, the ONNX backend."""
