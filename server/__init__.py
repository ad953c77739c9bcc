"""Run finsent's Triton model repository on the tritonserver binary shipped in PyPI nvidia-pytriton."""
