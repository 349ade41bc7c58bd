"""On-device export of the streaming denoiser and the fast decoder (ONNX, ExecuTorch, Core ML)."""
