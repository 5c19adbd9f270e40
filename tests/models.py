"""Small ONNX policies built in the tests (no downloads), and exports around them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STATE_DIM, ACTION_DIM = 8, 7
_ONNX_TYPES = {"float32": TensorProto.FLOAT, "uint8": TensorProto.UINT8, "int64": TensorProto.INT64}


def linear_policy(
    *,
    image_shape: tuple[int, ...] | None = None,
    image_dtype: str = "float32",
    state: bool = True,
    chunk: int | None = 4,
    width: int = ACTION_DIM,
    seed: int = 0,
    output: str = "actions",
    fill: float | None = None,
    overflow: bool = False,
    batch: int | str = 1,
) -> onnx.ModelProto:
    """actions = tanh(W_s @ state + W_i @ flatten(image)), tiled to a chunk; every input matters.

    ``batch`` is the first dimension of every input and of the output: a name makes it dynamic, so
    several observations run in one call (``pytest-vla serve`` batches them).

    The image term uses position-dependent weights, so a flipped or mis-scaled image changes the
    actions. ``fill`` multiplies the result by a constant (NaN breaks even the preflight's zero
    observation); ``overflow`` scales it to inf for any non-zero state, which the preflight's zero
    state cannot reveal but a real episode does.
    """
    rng = np.random.default_rng(seed)
    rows = 1 if batch == 1 else -1  # Reshape's "whatever is left" for a dynamic batch
    inputs, initializers, nodes, terms = [], [], [], []
    if state:
        inputs.append(helper.make_tensor_value_info("state", TensorProto.FLOAT, [batch, STATE_DIM]))
        initializers.append(numpy_helper.from_array(rng.normal(0, 0.3, (STATE_DIM, width)).astype(np.float32), "ws"))
        nodes.append(helper.make_node("MatMul", ["state", "ws"], ["state_term"]))
        terms.append("state_term")
    if image_shape is not None:
        pixels = int(np.prod(image_shape))
        inputs.append(helper.make_tensor_value_info("image", _ONNX_TYPES[image_dtype], [batch, *image_shape[1:]]))
        initializers += [
            numpy_helper.from_array(rng.normal(0, 1.0 / pixels, (pixels, width)).astype(np.float32), "wi"),
            numpy_helper.from_array(np.array([rows, pixels], np.int64), "flat_shape"),
        ]
        nodes += [
            helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["image_f", "flat_shape"], ["image_flat"]),
            helper.make_node("MatMul", ["image_flat", "wi"], ["image_term"]),
        ]
        terms.append("image_term")
    nodes.append(helper.make_node("Sum", terms, ["pre"]))
    nodes.append(helper.make_node("Tanh", ["pre"], ["act"]))
    last = "act"
    if fill is not None:
        initializers.append(numpy_helper.from_array(np.array(fill, np.float32), "fill"))
        nodes.append(helper.make_node("Mul", [last, "fill"], ["act_filled"]))
        last = "act_filled"
    if overflow:
        initializers.append(numpy_helper.from_array(np.array(1e30, np.float32), "huge"))
        nodes.append(helper.make_node("Mul", [last, "huge"], ["act_big"]))
        nodes.append(helper.make_node("Mul", ["act_big", "huge"], ["act_overflow"]))
        last = "act_overflow"
    if chunk is None:
        nodes.append(helper.make_node("Identity", [last], [output]))
        out_shape = [batch, width]
    else:
        initializers.append(numpy_helper.from_array(np.array([rows, 1, width], np.int64), "row_shape"))
        initializers.append(numpy_helper.from_array(np.array([1, chunk, 1], np.int64), "repeats"))
        nodes.append(helper.make_node("Reshape", [last, "row_shape"], ["row"]))
        nodes.append(helper.make_node("Tile", ["row", "repeats"], [output]))
        out_shape = [batch, chunk, width]
    graph = helper.make_graph(
        nodes,
        "linear_policy",
        inputs,
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def privileged_policy(inputs: dict[str, list[Any]]) -> onnx.ModelProto:
    """action[:, :3] = sum of every input's values (so each one matters); the rest zero."""
    value_infos = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()]
    nodes, sums = [], []
    for name in inputs:
        nodes.append(helper.make_node("ReduceSum", [name], [f"{name}_sum"], keepdims=0))
        sums.append(f"{name}_sum")
    nodes += [
        helper.make_node("Sum", sums, ["total"]),
        helper.make_node("Constant", [], ["shape"], value_ints=[1, 1]),
        helper.make_node("Reshape", ["total", "shape"], ["total_2d"]),
        helper.make_node("Constant", [], ["zeros"], value_floats=[0.0] * 4),
        helper.make_node("Constant", [], ["zeros_shape"], value_ints=[1, 4]),
        helper.make_node("Reshape", ["zeros", "zeros_shape"], ["zeros_2d"]),
        helper.make_node("Concat", ["total_2d", "total_2d", "total_2d", "zeros_2d"], ["actions"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "privileged", value_infos, [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, 7])]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def write_export(
    directory: Path, model: onnx.ModelProto, inputs: dict[str, Any], action: dict[str, Any] | None = None
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, directory / "model.onnx")
    manifest = {
        "format": "vla-export/1",
        "model": "model.onnx",
        "inputs": inputs,
        "action": action or {"output": "actions", "dim": ACTION_DIM},
    }
    (directory / "vla_export.json").write_text(json.dumps(manifest, indent=2))
    return directory


def state_only_export(directory: Path, **policy: Any) -> Path:
    """A physics-only export: binds no camera, so its episodes render nothing."""
    return write_export(directory, linear_policy(**policy), {"state": {"source": "state"}})


def camera_export(directory: Path, size: int = 32, camera: str = "agentview", **policy: Any) -> Path:
    image = {"source": "image", "camera": camera, "size": [size, size], "layout": "NCHW", "dtype": "float32"}
    return write_export(
        directory,
        linear_policy(image_shape=(1, 3, size, size), **policy),
        {"image": image, "state": {"source": "state"}},
    )


def signature_policy(
    inputs: dict[str, tuple[int, list[int]]], output: str = "actions", output_shape: tuple[int, ...] = (1, 50, 32)
) -> onnx.ModelProto:
    """A model with a given input signature (name -> (TensorProto type, shape)) whose output depends on
    every input: ``tanh(sum of each input's mean + a fixed pattern)``, shaped ``output_shape``."""
    value_infos, nodes, means = [], [], []
    for name, (elem_type, shape) in inputs.items():
        value_infos.append(helper.make_tensor_value_info(name, elem_type, shape))
        nodes.append(helper.make_node("Cast", [name], [f"{name}_f"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("ReduceMean", [f"{name}_f"], [f"{name}_mean"], keepdims=0))
        means.append(f"{name}_mean")
    pattern = np.linspace(-0.5, 0.5, int(np.prod(output_shape)), dtype=np.float32).reshape(output_shape)
    nodes += [
        helper.make_node("Sum", means, ["total"]),
        helper.make_node("Add", ["pattern", "total"], ["pre"]),
        helper.make_node("Tanh", ["pre"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        "signature_policy",
        value_infos,
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(output_shape))],
        [numpy_helper.from_array(pattern, "pattern")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def word_tokenizer(path: Path, words: list[str], pad_id: int | None = None) -> Path:
    """A word-level tokenizer.json built with `tokenizers` (ids in list order; 0 is [PAD], 1 is [UNK])."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: index for index, word in enumerate(["[PAD]", "[UNK]", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if pad_id is not None:
        tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")
    tokenizer.save(str(path))
    return path


def hanging_policy(passing_noise: float, *, on_state: bool = False) -> onnx.ModelProto:
    """(state, noise[1]) -> actions, stuck for hours in onnxruntime's native Loop unless the noise is
    ``passing_noise`` (a given query's draw) and, with ``on_state``, the state is zero: a native hang
    the episode loop cannot interrupt."""
    counter_in = helper.make_tensor_value_info("counter_in", TensorProto.FLOAT, [])
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["counter_in", "one"], ["counter_out"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            counter_in,
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("counter_out", TensorProto.FLOAT, []),
        ],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    nodes = [
        helper.make_node("Sub", ["noise", "passing"], ["offset"]),
        helper.make_node("Abs", ["offset"], ["noise_magnitude"]),
        helper.make_node("Abs", ["state"], ["state_magnitude"]),
        helper.make_node("Mul", ["state_magnitude", "state_weight"], ["state_part"]),
        helper.make_node("ReduceSum", ["noise_magnitude"], ["noise_total"], keepdims=0),
        helper.make_node("ReduceSum", ["state_part"], ["state_total"], keepdims=0),
        helper.make_node("Add", ["noise_total", "state_total"], ["total"]),
        helper.make_node("Mul", ["total", "huge"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "true", "zero"], ["spun"], body=body),
        helper.make_node("Mul", ["spun", "zero"], ["nothing"]),
        helper.make_node("Expand", ["nothing", "action_shape"], ["actions"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(1e15, np.float32), "huge"),
        numpy_helper.from_array(np.array([passing_noise], np.float32), "passing"),
        numpy_helper.from_array(np.array(1.0 if on_state else 0.0, np.float32), "state_weight"),
        numpy_helper.from_array(np.array(True), "true"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([1, ACTION_DIM], np.int64), "action_shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "hanging_policy",
        [
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, STATE_DIM]),
            helper.make_tensor_value_info("noise", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, ACTION_DIM])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def save_with_external_data(model: onnx.ModelProto, path: Path, location: str = "weights.bin") -> Path:
    """``model`` at ``path`` with its weight matrices in ``location`` beside it (ONNX external data)."""
    onnx.save_model(
        model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=location, size_threshold=100
    )
    return path


def relocate_external_data(path: Path, location: str) -> None:
    """Point the external tensors of the model at ``path`` to ``location``; the data is not moved."""
    proto = onnx.load_model(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(proto.SerializeToString())
