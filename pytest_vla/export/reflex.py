"""Exports written by ``reflex export`` (reflex-vla / tether): a binding derived from ``reflex_config.json``.

A reflex export directory has ``model.onnx`` and ``reflex_config.json`` but no ``vla_export.json``.
Its ONNX I/O is fixed per ``model_type`` (``docs/export.md`` lists it, with the sources); this module
writes the manifest a user would otherwise write by hand, or names what the directory lacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_vla.errors import ExportError, read_json
from pytest_vla.export import FORMAT

REFLEX_CONFIG = "reflex_config.json"
PREPROCESSOR_CONFIG = "policy_preprocessor.json"  # LeRobot's: the normalization modes, when present
MODEL_TYPES = ("smolvla", "pi0", "pi05")
# Camera input names in the order reflex's runner fills them: agentview, wrist, then a padded third.
CAMERA_INPUTS = {
    "smolvla": ("img_cam1", "img_cam2", "img_cam3"),
    "pi0": ("img_base", "img_wrist_l", "img_wrist_r"),
    "pi05": ("img_base", "img_wrist_l", "img_wrist_r"),
}
MASK_INPUTS = {
    "smolvla": ("mask_cam1", "mask_cam2", "mask_cam3"),
    "pi0": ("mask_base", "mask_wrist_l", "mask_wrist_r"),
    "pi05": ("mask_base", "mask_wrist_l", "mask_wrist_r"),
}
IMAGE_SIZE = {"smolvla": 512, "pi0": 224, "pi05": 224}  # fed pre-SigLIP: resized, scaled to [-1, 1]
TOKENS = 16  # reflex exports lang_tokens with a static length of 16
# LeRobot's normalization of each policy (its normalization_mapping) when the export has no
# policy_preprocessor.json that says otherwise.
DEFAULT_MODES = {"smolvla": "mean_std", "pi0": "mean_std", "pi05": "q01_q99"}
LEROBOT_MODES = {"MEAN_STD": "mean_std", "MIN_MAX": "min_max", "QUANTILES": "q01_q99"}
EXECUTE = 5  # reflex's LIBERO runner (and openpi's) replan every 5 actions
PI05_PROMPT = "Task: {instruction}, State: {state};\nAction: "


def is_reflex_export(directory: Path) -> bool:
    return (directory / REFLEX_CONFIG).is_file()


def reflex_manifest(directory: Path) -> dict[str, Any]:
    """The ``vla-export/1`` manifest (as JSON data) equivalent to a reflex export directory."""
    where = directory / REFLEX_CONFIG
    config = read_json(where, ExportError)
    if not isinstance(config, dict):
        raise ExportError(f"{where}: the top level must be a JSON object")
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ExportError(f"{where}: model_type {model_type!r} has no known binding (known: {', '.join(MODEL_TYPES)})")
    if config.get("export_kind", "monolithic") != "monolithic":
        raise ExportError(
            f"{where}: export_kind {config.get('export_kind')!r}: only monolithic reflex exports (one model.onnx) "
            "can be evaluated"
        )
    model = directory / "model.onnx"
    if not model.is_file():
        raise ExportError(f"{directory}: reflex export without model.onnx")
    tokenizer = directory / "tokenizer" / "tokenizer.json"
    if not tokenizer.is_file():
        bundled = "" if config.get("tokenizer_bundled", True) else " (reflex_config.json says tokenizer_bundled=false)"
        raise ExportError(
            f"{directory}: no tokenizer/tokenizer.json{bundled}; put the tokenizer of "
            f"{config.get('tokenizer_ref') or 'the model'} there"
        )
    preprocessor, postprocessor = _stats_files(directory, model_type)
    state_mode, action_mode = _modes(directory, model_type)
    chunk = _positive(config, "chunk_size", "action_chunk_size", default=50)
    action_width = _positive(config, "action_dim", default=32)
    state_width = _positive(config, "max_state_dim", default=32)

    size = IMAGE_SIZE[model_type]
    image = {"source": "image", "size": [size, size], "layout": "NCHW", "range": [-1, 1], "resize": "pad"}
    cameras, masks = CAMERA_INPUTS[model_type], MASK_INPUTS[model_type]
    state_normalize = {"mode": state_mode, "stats": preprocessor, "key": "observation.state"}
    inputs: dict[str, Any] = {
        cameras[0]: {**image, "camera": "agentview"},
        cameras[1]: {**image, "camera": "wrist"},
        # LIBERO has two cameras: the third is padded with -1 and masked out, as in reflex's runner.
        cameras[2]: {"source": "constant", "value": -1.0, "dtype": "float32", "shape": [1, 3, size, size]},
        masks[0]: {"source": "constant", "value": True, "dtype": "bool", "shape": [1]},
        masks[1]: {"source": "constant", "value": True, "dtype": "bool", "shape": [1]},
        masks[2]: {"source": "constant", "value": False, "dtype": "bool", "shape": [1]},
        "noise": {"source": "noise", "shape": [1, chunk, action_width]},
    }
    text = {"tokenizer": "tokenizer/tokenizer.json", "max_length": TOKENS}
    if model_type == "pi05":
        # pi0.5 reads the state as text: normalized, padded, discretized into 256 bins in the prompt.
        text |= {"template": PI05_PROMPT, "state": {"normalize": state_normalize, "pad_to": state_width}}
    else:
        text["template"] = "{instruction}\n"  # LeRobot's SmolVLA and pi0 processors end the task with a newline
        inputs["state"] = {"source": "state", "pad_to": state_width, "normalize": state_normalize}
    inputs["lang_tokens"] = {"source": "instruction_tokens", **text}
    inputs["lang_masks"] = {"source": "instruction_mask", **text}
    return {
        "format": FORMAT,
        "model": "model.onnx",
        "inputs": inputs,
        "action": {
            "output": "actions",
            "dim": 7,
            "execute": EXECUTE,
            "unnormalize": {"mode": action_mode, "stats": postprocessor, "key": "action"},
        },
    }


def _stats_files(directory: Path, model_type: str) -> tuple[str, str]:
    found = []
    for pattern in (
        "policy_preprocessor_step_*_normalizer_processor.safetensors",
        "policy_postprocessor_step_*_unnormalizer_processor.safetensors",
    ):
        matches = sorted(directory.glob(pattern))
        if not matches:
            raise ExportError(
                f"{directory}: {model_type} reflex export without normalization statistics ({pattern}); "
                "monolithic reflex exports do not bundle them: copy the policy_preprocessor and "
                "policy_postprocessor files of the model's LeRobot checkpoint into the export"
            )
        found.append(matches[0].name)
    return found[0], found[1]


def _modes(directory: Path, model_type: str) -> tuple[str, str]:
    """(state mode, action mode) from the LeRobot preprocessor config when present, else the model's default."""
    path = directory / PREPROCESSOR_CONFIG
    default = DEFAULT_MODES[model_type]
    if not path.is_file():
        return default, default
    try:
        steps = json.loads(path.read_text(encoding="utf-8")).get("steps", [])
        norm_map = next(
            step["config"]["norm_map"] for step in steps if step.get("registry_name") == "normalizer_processor"
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, StopIteration):
        raise ExportError(f"{path}: no normalizer_processor step with a norm_map") from None
    modes = []
    for feature in ("STATE", "ACTION"):
        mode = norm_map.get(feature, "IDENTITY")
        if mode not in LEROBOT_MODES:
            raise ExportError(
                f"{path}: {feature} normalization {mode!r} has no binding (known: {', '.join(LEROBOT_MODES)})"
            )
        modes.append(LEROBOT_MODES[mode])
    return modes[0], modes[1]


def _positive(config: dict[str, Any], *keys: str, default: int) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default
