"""Write examples/tiny_export: a tiny ONNX policy that exercises the whole harness.

It reads the agentview image and the 8-D state and returns a 5-step chunk that holds the arm
still with the gripper open, so it never succeeds: it shows the harness, not a skill. Run it again
after changing it: ``python examples/make_tiny_export.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHUNK, ACTION_DIM, STATE_DIM, SIZE = 5, 7, 8, 224


def build() -> onnx.ModelProto:
    hold = np.tile(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32), (1, CHUNK, 1))
    initializers = [
        numpy_helper.from_array(hold, "hold"),
        # Zero weights still route both inputs through the graph, so both must be fed correctly.
        numpy_helper.from_array(np.zeros((STATE_DIM, CHUNK * ACTION_DIM), np.float32), "state_weights"),
        numpy_helper.from_array(np.array([1, CHUNK, ACTION_DIM], np.int64), "chunk_shape"),
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["brightness"], keepdims=0),
        helper.make_node("Mul", ["brightness", "zero"], ["image_term"]),
        helper.make_node("MatMul", ["state", "state_weights"], ["state_flat"]),
        helper.make_node("Reshape", ["state_flat", "chunk_shape"], ["state_term"]),
        helper.make_node("Add", ["hold", "state_term"], ["held"]),
        helper.make_node("Add", ["held", "image_term"], ["actions"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_policy",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIZE, SIZE]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, STATE_DIM]),
        ],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, CHUNK, ACTION_DIM])],
        initializers,
    )
    # onnxruntime 1.31 rejects onnx's default IR version 14.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def main() -> None:
    out = Path(__file__).parent / "tiny_export"
    out.mkdir(exist_ok=True)
    onnx.save(build(), out / "model.onnx")
    manifest = {
        "format": "vla-export/1",
        "model": "model.onnx",
        "inputs": {
            "image": {
                "source": "image",
                "camera": "agentview",
                "size": [SIZE, SIZE],
                "layout": "NCHW",
                "dtype": "float32",
                "range": [0, 1],
            },
            "state": {"source": "state"},
        },
        "action": {"output": "actions", "dim": ACTION_DIM, "execute": CHUNK},
    }
    (out / "vla_export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
