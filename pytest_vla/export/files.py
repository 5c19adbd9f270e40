"""Where an export is, and what it is made of: the digests that tie a report to the exact files evaluated."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pytest_vla.errors import ExportError, one_line
from pytest_vla.export.manifest import Manifest, export_member, load_manifest
from pytest_vla.export.reflex import PREPROCESSOR_CONFIG, REFLEX_CONFIG


def file_digest(path: Path, name: str | None = None) -> dict[str, Any]:
    """sha256 and size of one file, streamed so multi-GB weights never sit in memory."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    except OSError as exc:
        raise ExportError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return {"name": name or path.name, "sha256": digest.hexdigest(), "bytes": size}


def export_files(export_dir: Path) -> list[dict[str, Any]]:
    """Digests of exactly the files an evaluation of the export reads (see :func:`loaded_files`)."""
    manifest = load_manifest(export_dir)
    return loaded_files(manifest, external_data(manifest.model))


def loaded_files(manifest: Manifest, external: Sequence[Path]) -> list[dict[str, Any]]:
    """Digests of the binding's files, the model, its external data, tokenizers and statistics, by name.

    Each entry's name is relative to the export directory; ``path`` is where the file really was
    (symlinks resolved). Nothing else in the directory counts: a stray file does not change the export.
    """
    read = [manifest.where]
    if manifest.source == REFLEX_CONFIG and (manifest.directory / PREPROCESSOR_CONFIG).is_file():
        read.append(manifest.directory / PREPROCESSOR_CONFIG)
    read += [*manifest.named_files, *external]
    entries = []
    for path in sorted(dict.fromkeys(read), key=lambda path: path.relative_to(manifest.directory).as_posix()):
        entry = file_digest(path, path.relative_to(manifest.directory).as_posix())
        entries.append({**entry, "path": str(path.resolve())})
    return entries


def check_unchanged(recorded: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]]) -> None:
    """Raise :class:`ExportError` naming a file whose digest differs from the one the run recorded at its start."""
    then = {entry["name"]: entry["sha256"] for entry in recorded}
    now = {entry["name"]: entry for entry in current}
    for name, entry in now.items():
        if then.get(name) != entry["sha256"]:
            was = f"sha256 {then[name][:16]} when the run started" if name in then else "not part of it then"
            raise ExportError(
                f"{entry['path']}: the export changed during the run (sha256 {entry['sha256'][:16]} now, {was}); "
                "its episodes would evaluate another model than the report names"
            )
    gone = sorted(then.keys() - now.keys())
    if gone:
        raise ExportError(f"{gone[0]}: the export changed during the run: the binding no longer reads this file")


def external_data(model: Path) -> tuple[Path, ...]:
    """The files the model keeps tensor data in (ONNX external data), each beside or below the model.

    Checked before onnxruntime opens the model: it resolves each tensor's ``location`` itself, and
    older releases follow absolute and '..' locations anywhere on the host. ``onnx`` parses only the
    protobuf here (``load_external_data=False``): no tensor data is read.
    """
    import onnx

    try:
        proto = onnx.load_model(str(model), load_external_data=False)
    except Exception as exc:  # protobuf and onnx raise several unrelated types for a bad file
        raise ExportError(f"{model}: onnx cannot parse it: {one_line(exc)}") from None
    found: dict[Path, None] = {}
    for tensor in _tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        at = f"{model}: tensor {tensor.name!r} external_data location"
        path = export_member(model.parent, location, at)
        if not path.is_file():
            raise ExportError(f"{at}: {location!r} not found in {path.parent}")
        found[path] = None
    return tuple(found)


def _tensors(message: Any) -> Iterator[Any]:
    """Every TensorProto in an ONNX message: initializers, sparse ones, node attributes, subgraphs, functions."""
    import onnx
    from google.protobuf.message import Message

    if isinstance(message, onnx.TensorProto):
        yield message
        return
    for _, value in message.ListFields():
        if isinstance(value, Message):
            yield from _tensors(value)
        elif isinstance(value, Iterable) and not isinstance(value, str | bytes):
            for item in value:
                if isinstance(item, Message):
                    yield from _tensors(item)
