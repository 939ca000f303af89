"""Export a student (or any HF encoder) to ONNX, quantise it for a target,
gate it on parity with the fp32 model, and write a verified bundle."""
