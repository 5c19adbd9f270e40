"""The export's ONNX session run on the feeds of several requests at once, and split back per request."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pytest_vla.errors import PolicyError
from pytest_vla.export.manifest import ConstantInput, NoiseInput
from pytest_vla.policy.feeds import NUMPY_TYPES
from pytest_vla.policy.onnx import OnnxPolicy

Feed = dict[str, np.ndarray]
# Input name -> (shape, dtype) of one request's feed: only feeds with equal signatures stack into one batch.
Signature = tuple[tuple[str, tuple[int, ...], str], ...]


class BatchedModel:
    """One onnxruntime session (the policy's) stepping stacked feeds: every input concatenated on its first axis.

    Batching needs every model input and the action output to have a dynamic first dimension, and each
    fixed-shape input (constant, noise) a first dimension of 1; :attr:`unbatched_because` says which
    does not, and such a model runs one request per call.
    """

    def __init__(self, policy: OnnxPolicy) -> None:
        self.policy = policy
        self.output = policy.manifest.action.output
        self._inputs = {node.name: (list(node.shape), NUMPY_TYPES[node.type]) for node in policy.session.get_inputs()}
        self.unbatched_because = self._unbatchable()

    def _unbatchable(self) -> str | None:
        for name, (shape, _) in self._inputs.items():
            if not shape or isinstance(shape[0], int):
                return f"input {name!r} has shape {shape}: its first dimension is fixed"
        output = next(node for node in self.policy.session.get_outputs() if node.name == self.output)
        if not output.shape or isinstance(output.shape[0], int):
            return f"output {self.output!r} has shape {list(output.shape)}: its first dimension is fixed"
        for binding in self.policy.manifest.inputs:
            if isinstance(binding, ConstantInput | NoiseInput) and binding.shape[:1] != (1,):
                return f"inputs.{binding.name} has shape {list(binding.shape)}: its first dimension is not 1"
        return None

    def signature(self, feed: Feed) -> Signature:
        """What ``feed`` stacks by; raise :class:`PolicyError` for an input the model does not take as given.

        Checked per request, so a request the model cannot take fails alone, not in a batch with others.
        """
        for name, value in feed.items():
            shape, dtype = self._inputs[name]
            fits = value.ndim == len(shape) and all(
                not isinstance(side, int) or side == given for side, given in zip(shape, value.shape, strict=True)
            )
            if not fits or value.dtype != dtype:
                raise PolicyError(
                    f"model input {name!r} takes {dtype} {shape}; this observation gives {value.dtype} "
                    f"{list(value.shape)}"
                )
        return tuple((name, value.shape, value.dtype.str) for name, value in feed.items())

    def run(self, feeds: Sequence[Feed]) -> list[np.ndarray]:
        """The raw action output of each feed (first dimension 1), from one session call."""
        if len(feeds) == 1:
            stacked = feeds[0]
        else:
            stacked = {name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]}
        (output,) = self.policy.session.run([self.output], stacked)
        output = np.asarray(output)
        if len(feeds) == 1:
            return [output]
        if output.ndim == 0 or output.shape[0] != len(feeds):
            raise PolicyError(
                f"output {self.output!r} has shape {list(output.shape)} for a batch of {len(feeds)} observations"
            )
        return [output[index : index + 1] for index in range(len(feeds))]
