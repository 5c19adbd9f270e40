"""Policies served over the network: a vla-eval protocol v1 server (any vla-eval model server, or
``pytest-vla serve``) or an openpi websocket policy server, queried from each process that runs episodes.

The suite says what its reference client for each protocol sends and executes
(:meth:`pytest_vla.suites.base.Suite.served_client`); the transport, the handshakes and every check
of what the server sends are here. A failure is a :class:`~pytest_vla.errors.PolicyError` of one
line that starts with the server's URL; after a lost connection, the next episode reconnects.
"""

from __future__ import annotations

from pytest_vla.errors import PolicyError
from pytest_vla.policy.base import Policy
from pytest_vla.policy.served.openpi import OpenpiPolicy
from pytest_vla.policy.served.transport import PROTOCOLS, endpoint
from pytest_vla.policy.served.vla_eval import VlaEvalPolicy
from pytest_vla.suites.base import Suite

__all__ = ["PROTOCOLS", "connect_policy"]


def connect_policy(url: str, protocol: str, suite: Suite, *, query_timeout_s: float, ready_timeout_s: float) -> Policy:
    """The policy served at ``url`` (``ws://`` or ``wss://``) in ``protocol``, connected once the server is ready.

    Waits up to ``ready_timeout_s`` for the server's readiness probe (at every connection, a
    reconnection included), and up to ``query_timeout_s`` for each of its replies.
    """
    if protocol not in PROTOCOLS:
        raise PolicyError(f"{protocol!r} is no policy server protocol (known: {', '.join(PROTOCOLS)})")
    if protocol == "openpi" and getattr(suite, "served_client", None) is None:  # said before any wait for the server
        raise PolicyError(
            f"the {suite.name} suite has no client for openpi servers: serve the export with pytest-vla serve "
            "(vla-eval protocol), or evaluate it in-process"
        )
    kind = VlaEvalPolicy if protocol == "vla-eval" else OpenpiPolicy
    return kind(endpoint(url), suite, query_timeout_s=query_timeout_s, ready_timeout_s=ready_timeout_s)
