"""Turn Hugging Face sequence classifiers into ONNX models that the Triton repository serves."""
