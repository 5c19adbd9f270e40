"""Instructions as token ids and masks, with the export's own tokenizer.json (the ``tokenizers`` library)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pytest_vla.errors import ExportError, read_json
from pytest_vla.export.manifest import InstructionInput, PromptState
from pytest_vla.policy.feeds import normalized_and_padded


@dataclass(frozen=True)
class EncodedInstruction:
    ids: np.ndarray  # (max_length,) int64
    mask: np.ndarray  # (max_length,) bool
    full_length: int  # tokens before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > self.ids.shape[0]


class InstructionEncoder:
    """One tokenizer.json (the ``tokenizers`` library; nothing is fetched) and its padding rules."""

    def __init__(self, binding: InstructionInput) -> None:
        from tokenizers import Tokenizer

        try:
            self._tokenizer = Tokenizer.from_file(str(binding.tokenizer))
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise ExportError(f"{binding.tokenizer}: not a tokenizer the tokenizers library can read: {exc}") from None
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.binding = binding
        self.pad_id = binding.pad_id if binding.pad_id is not None else _default_pad_id(binding.tokenizer)

    def prompt(self, instruction: str, state: np.ndarray) -> str:
        """The text that is tokenized: the template filled with the instruction (and the state, for pi0.5)."""
        if self.binding.state is None:
            return self.binding.template.format(instruction=instruction)
        return self.binding.template.format(instruction=instruction, state=state_bins(state, self.binding.state))

    def encode(self, instruction: str, state: np.ndarray) -> EncodedInstruction:
        return self._encode(self.prompt(instruction, state))

    @functools.lru_cache(maxsize=256)  # noqa: B019 (one encoder per export; prompts repeat within a task)
    def _encode(self, prompt: str) -> EncodedInstruction:
        """Token ids and mask of the prompt, right-padded or truncated to ``max_length``."""
        ids = self._tokenizer.encode(prompt).ids
        length = self.binding.max_length
        kept = ids[:length]
        padded = np.full(length, self.pad_id, dtype=np.int64)
        padded[: len(kept)] = kept
        mask = np.zeros(length, dtype=bool)
        mask[: len(kept)] = True
        return EncodedInstruction(ids=padded, mask=mask, full_length=len(ids))


def state_bins(state: np.ndarray, spec: PromptState) -> str:
    """pi0.5's state text: normalized, zero-padded, digitized into 256 bins over [-1, 1], space-separated."""
    values = normalized_and_padded(state, spec.normalize, spec.pad_to)
    bins = np.digitize(values, bins=np.linspace(-1, 1, 256 + 1)[:-1]) - 1
    return " ".join(map(str, bins))


def _default_pad_id(tokenizer: Path) -> int:
    """The tokenizer.json's own padding id when it declares one, else 0."""
    padding = read_json(tokenizer, ExportError).get("padding") or {}
    pad_id = padding.get("pad_id")
    return pad_id if isinstance(pad_id, int) else 0
