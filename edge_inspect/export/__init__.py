"""Model export: the scoring graph to ONNX (TensorRT engines are built from that file)."""
