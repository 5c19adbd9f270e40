"""An export as a policy: model inputs fed from observations, the ONNX session, the action chunk."""
