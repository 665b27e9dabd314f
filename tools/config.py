"""Everything that shapes a session, as one typed value: the loop, the command line and the tests
build an ``AgentConfig``; ``model_client`` is the one place a model client is built from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from midstream.tools.wire.model import ModelClient
from midstream.tools.wire.providers import client_for

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_MODEL", "AgentConfig", "model_client"]

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"


@dataclass
class AgentConfig:
    """Everything that shapes a session; defaults are what a person gets with no flags."""

    workspace: Path = field(default_factory=Path.cwd)
    """The directory the tools act in."""
    provider: str = "anthropic"
    """The wire: anthropic (Messages API) or openai (Chat Completions: OpenAI, Ollama, llama.cpp, vLLM)."""
    model: str = DEFAULT_MODEL
    """Model name sent with every request."""
    base_url: str = DEFAULT_BASE_URL
    """Any Anthropic-compatible Messages API."""
    api_key: str | None = None
    """Sent as x-api-key; may be absent for a local server."""
    max_tokens: int = 16000
    """Output budget of one model request."""
    max_requests: int = 50
    """Model requests allowed for one user message before the loop stops."""
    max_attempts: int = 5
    """Tries of one request (the first plus retries) before giving up."""
    connect_timeout: float = 10.0
    """Seconds to open a connection to the model service."""
    idle_timeout: float = 90.0
    """Seconds without any stream event (pings count) before the reply is treated as dropped."""
    request_timeout: float = 600.0
    """Seconds one model request may take in all, however its bytes trickle in."""
    retry_after_max: float = 300.0
    """Longest wait a service's retry-after may impose; asking for more ends the turn instead."""
    backoff_base: float = 1.0
    """First retry delay in seconds; it doubles each attempt, with jitter."""
    backoff_max: float = 30.0
    """Largest retry delay in seconds, unless the server's retry-after asks for more."""
    workers: int = 8
    """Tool calls that may run at once."""
    mode: str = "auto"
    """Permission mode: read-only, ask or auto (see sandbox/permissions.py)."""
    grace_seconds: float = 3.0
    """How long a destructive call shows its targets before it runs in auto mode; 0 turns it off."""
    refuse_destructive: bool = False
    """Refuse destructive calls in auto mode instead of counting down (-p without an explicit mode)."""
    isolation: str = "auto"
    """Shell isolation: bwrap, none, or auto (bwrap when it works here)."""
    network: bool = False
    """Let shell commands reach the network (the sandbox has none by default)."""
    system_prompt: str = ""
    """The system prompt; empty means built from prompts/ for this workspace and its instruction files."""
    prompt_cache: bool = True
    """Send cache_control breakpoints (see tools/conversation/cache.py) and audit what each reply read."""
    cache_ttl: str = "5m"
    """Prompt cache lifetime: 5m, or 1h (writes cost 2x input instead of 1.25x)."""
    tell_date: bool = True
    """Tell the model today's date in the first message, and again in the first message after it changes."""
    context_window: int | None = None
    """Tokens one request may hold; None: known for Claude models (tools/conversation/compaction.py)."""
    compact: bool = True
    """Clear old tool results and compact the conversation before it outgrows the window (/compact and
    the recovery from a "prompt is too long" answer work either way)."""


def model_client(config: AgentConfig, **wire: Any) -> ModelClient:
    """The one place a model client is built from the configuration (``wire``: a transport, a recorder)."""
    return client_for(config.provider, base_url=config.base_url, api_key=config.api_key,
                      connect_timeout=config.connect_timeout, idle_timeout=config.idle_timeout,
                      request_timeout=config.request_timeout, **wire)
