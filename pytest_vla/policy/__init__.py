"""Policies: an ONNX export run in-process (model inputs, the session, the action chunk), or one served (``served``)."""
