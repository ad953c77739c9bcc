"""Fine-tune encoders on Financial PhraseBank into the checkpoints that export/ turns into ONNX."""
