"""Which policy a run evaluates, as options name it: the same in every process, each of which makes its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vla.errors import PolicyError

if TYPE_CHECKING:  # numpy: plugin.py's options import this module in every pytest session
    from pytest_vla.policy.base import Policy
    from pytest_vla.suites.base import Suite

SERVER_PROTOCOLS = ("vla-eval", "openpi")
DEFAULT_QUERY_TIMEOUT_S = 60.0  # a first query may compile kernels (JAX, TensorRT) for tens of seconds


@dataclass(frozen=True)
class PolicyChoice:
    """One of ``export`` (``--vla-export``), ``server`` (``--vla-policy-server``), ``name`` (``--vla-policy``)."""

    export: Path | None = None
    server: str | None = None
    protocol: str = SERVER_PROTOCOLS[0]  # the server's, with ``server``
    name: str | None = None  # a plugin's or conftest's policy, made by pytest_vla_make_policy
    query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S  # a served policy's reply, each query

    def describe(self) -> str:
        if self.export is not None:
            return f"export {self.export}"
        if self.server is not None:
            return f"policy server {self.server} ({self.protocol})"
        return f"policy {self.name!r}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "export": None if self.export is None else str(self.export)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyChoice:
        return cls(**{**data, "export": None if data["export"] is None else Path(data["export"])})


def make_policy(
    choice: PolicyChoice,
    suite: Suite,
    *,
    intra_op_threads: int,
    ready_timeout_s: float,
    named: Callable[[str], Policy | None],
) -> Policy:
    """A new policy of ``choice`` in this process; ``named`` asks the plugins for a policy by name.

    ``intra_op_threads``: an export's onnxruntime threads (0: its default, one per core).

    Raises ``ExportError`` or ``PolicyError`` in one line.
    """
    if choice.export is not None:
        from pytest_vla.export.manifest import load_manifest
        from pytest_vla.policy.onnx import OnnxPolicy

        return OnnxPolicy(load_manifest(choice.export), intra_op_threads=intra_op_threads)
    if choice.server is not None:
        from pytest_vla.policy.served import connect_policy

        return connect_policy(
            choice.server,
            choice.protocol,
            suite,
            query_timeout_s=choice.query_timeout_s,
            ready_timeout_s=ready_timeout_s,
        )
    assert choice.name is not None
    policy = named(choice.name)
    if policy is None:
        raise PolicyError(f"--vla-policy {choice.name!r}: no plugin or conftest made it (pytest_vla_make_policy)")
    return policy
