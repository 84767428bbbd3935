"""Worker agents: a machine the server cannot reach dials in over a WebSocket and serves
its local models. ``frames`` is the wire (pure), ``handshake`` the HMAC challenge (pure),
``pool`` the provider the engine drives: it hands each job to a connected agent."""

from __future__ import annotations

from .pool import AgentLink, AgentPool, NoAgent

__all__ = ["AgentLink", "AgentPool", "NoAgent"]
