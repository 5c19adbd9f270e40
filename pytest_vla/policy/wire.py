"""The two policy-server wire formats, encoded and decoded with bounds: a reply is a file from others.

vla-eval protocol v1 (``vla_eval.protocol``): every frame a msgpack map ``{type, payload, seq,
timestamp}``; arrays as ``{"__ndarray__": True, data, dtype, shape}`` with str keys, uint8 HWC
images optionally as ``{"__image__": True, format, data, shape}`` (png, jpeg or raw). openpi
(``openpi_client.msgpack_numpy``): bare msgpack maps, arrays with bytes keys ``b"__ndarray__"``.
Both decoders here accept only bool, int, uint and float arrays whose bytes match their shape,
and refuse anything larger than the limits below in one line.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

VLA_EVAL_PROTOCOL_VERSION = 1
# pytest-vla's extension of it (docs/serve.md); 2 chooses state options by name and carries TaskSpec.name.
PYTEST_VLA_EXTENSION = 2
VLA_EVAL_TYPES = ("hello", "observation", "action", "episode_start", "episode_end", "error")
MAX_FRAME_BYTES = 256 * 1024 * 1024  # a frame of 16 uncompressed 2048x2048 cameras fits
MAX_ARRAY_DIMENSIONS = 8
MAX_IMAGE_SIDE = 4096
_NUMERIC_KINDS = frozenset("biuf")


class WireError(ValueError):
    """A frame that is not what the protocol says; the message names what is wrong, in one line."""


@dataclass(frozen=True)
class Frame:
    """One vla-eval protocol message."""

    type: str
    payload: dict[str, Any]
    seq: int
    timestamp: float = 0.0


def pack_frame(frame: Frame) -> bytes:
    """A vla-eval frame; arrays (images included) travel raw, which the upstream decoder accepts."""
    raw = {"type": frame.type, "payload": frame.payload, "seq": frame.seq, "timestamp": frame.timestamp or time.time()}
    return msgpack.packb(raw, default=_encode_vla_eval, use_bin_type=True)


def unpack_frame(data: bytes | str) -> Frame:
    """Decode one vla-eval frame; raise :class:`WireError` for anything else."""
    raw = _unpack(data, _decode_vla_eval)
    if not isinstance(raw, dict):
        raise WireError(f"a frame is a msgpack map, got {type(raw).__name__}")
    missing = [key for key in ("type", "payload", "seq", "timestamp") if key not in raw]
    if missing:
        raise WireError(f"a frame lacks {', '.join(missing)}")
    if raw["type"] not in VLA_EVAL_TYPES:
        raise WireError(f"unknown frame type {_short(raw['type'])}")
    if not isinstance(raw["payload"], dict):
        raise WireError(f"a {raw['type']} frame's payload is a {type(raw['payload']).__name__}, not a map")
    if not isinstance(raw["seq"], int) or isinstance(raw["seq"], bool):
        raise WireError(f"a frame's seq is {_short(raw['seq'])}, not an integer")
    timestamp = raw["timestamp"]
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        raise WireError(f"a frame's timestamp is {_short(timestamp)}, not a number")
    return Frame(raw["type"], raw["payload"], raw["seq"], float(timestamp))


def pack_openpi(value: Any) -> bytes:
    """One openpi message (``msgpack_numpy.packb``)."""
    return msgpack.packb(value, default=_encode_openpi, use_bin_type=True)


def unpack_openpi(data: bytes) -> Any:
    """Decode one openpi message; raise :class:`WireError` for what ``msgpack_numpy`` would not produce."""
    return _unpack(data, _decode_openpi)


def _unpack(data: bytes | str, hook: Callable[[dict[Any, Any]], Any]) -> Any:
    if isinstance(data, str):
        raise WireError(f"a text frame where a binary one belongs: {_short(data, 200)}")
    if len(data) > MAX_FRAME_BYTES:
        raise WireError(f"a frame of {len(data)} bytes, above the {MAX_FRAME_BYTES} accepted")
    try:
        return msgpack.unpackb(data, object_hook=hook, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for malformed bytes
        raise WireError(f"not msgpack ({type(exc).__name__}: {_short(str(exc), 120)})") from None


def _encode_vla_eval(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": True, "data": value.tobytes(), "dtype": value.dtype.str, "shape": list(value.shape)}
    return _scalar(value)


def _encode_openpi(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {b"__ndarray__": True, b"data": value.tobytes(), b"dtype": value.dtype.str, b"shape": value.shape}
    if isinstance(value, np.generic):
        return {b"__npgeneric__": True, b"data": value.item(), b"dtype": value.dtype.str}
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _decode_vla_eval(value: dict[Any, Any]) -> Any:
    if value.get("__image__") is True:
        return _image(value)
    if value.get("__ndarray__") is True:
        return array_of(value.get("data"), value.get("dtype"), value.get("shape"))
    return value


def _decode_openpi(value: dict[Any, Any]) -> Any:
    if value.get(b"__ndarray__") is True:
        return array_of(value.get(b"data"), value.get(b"dtype"), value.get(b"shape"))
    if value.get(b"__npgeneric__") is True:
        return array_of_scalar(value.get(b"data"), value.get(b"dtype"))
    return value


def array_of(data: Any, dtype: Any, shape: Any) -> np.ndarray:
    """A writable array from an encoded one, refused unless numeric and exactly ``shape``'s bytes."""
    kind = _dtype(dtype)
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_ARRAY_DIMENSIONS:
        raise WireError(f"an array's shape is {_short(shape)}")
    if not all(isinstance(side, int) and not isinstance(side, bool) and side >= 0 for side in shape):
        raise WireError(f"an array's shape is {_short(shape)}")
    if not isinstance(data, bytes):
        raise WireError(f"an array's data is a {type(data).__name__}, not bytes")
    if math.prod(shape) * kind.itemsize != len(data):
        raise WireError(f"an array of shape {list(shape)} and dtype {kind.str} holds {len(data)} bytes")
    return np.frombuffer(data, dtype=kind).reshape(shape).copy()


def array_of_scalar(data: Any, dtype: Any) -> Any:
    kind = _dtype(dtype)
    if isinstance(data, bool) or not isinstance(data, (int, float)):
        raise WireError(f"a numpy scalar's value is {_short(data)}")
    return kind.type(data)


def _dtype(dtype: Any) -> np.dtype[Any]:
    if not isinstance(dtype, str) or len(dtype) > 8:
        raise WireError(f"an array's dtype is {_short(dtype)}")
    try:
        kind = np.dtype(dtype)
    except TypeError:
        raise WireError(f"an array's dtype is {_short(dtype)}") from None
    if kind.kind not in _NUMERIC_KINDS:
        raise WireError(f"an array's dtype is {kind.str}: only bool, int, uint and float arrays are accepted")
    return kind


def _image(value: dict[str, Any]) -> np.ndarray:
    shape, fmt = value.get("shape"), value.get("format")
    if fmt == "raw":
        image = array_of(value.get("data"), value.get("dtype"), shape)
    elif fmt in ("png", "jpeg"):
        data = value.get("data")
        if not isinstance(data, bytes):
            raise WireError(f"a {fmt} image's data is a {type(data).__name__}, not bytes")
        image = _decoded_image(data, fmt)
        if isinstance(shape, list) and list(image.shape) != shape:
            raise WireError(f"a {fmt} image decodes to {list(image.shape)}, its frame says {_short(shape)}")
    else:
        raise WireError(f"an image's format is {_short(fmt)}, not png, jpeg or raw")
    if image.ndim != 3 or image.dtype != np.uint8 or max(image.shape[:2], default=0) > MAX_IMAGE_SIDE:
        raise WireError(f"an image of shape {list(image.shape)} and dtype {image.dtype}")
    return image


def _decoded_image(data: bytes, fmt: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as picture:
            if max(picture.size) > MAX_IMAGE_SIDE:
                raise WireError(f"a {fmt} image of {picture.size[0]}x{picture.size[1]} pixels")
            array = np.array(picture)
    except WireError:
        raise
    except Exception as exc:  # PIL raises several unrelated types for a broken file
        raise WireError(f"a {fmt} image does not decode ({type(exc).__name__})") from None
    return array if array.ndim == 3 else array[..., None]


def _short(value: Any, limit: int = 60) -> str:
    from pytest_vla.errors import short_repr

    return short_repr(value, limit)
