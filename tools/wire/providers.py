"""The one provider table: which wire each ``--provider`` speaks, its defaults and its variables.

Both wires are one :class:`ModelClient` (tools/wire/client.py) holding a dialect: the Messages API
(tools/wire/anthropic.py) or Chat Completions (tools/wire/openai.py). Each takes the request body
in the Messages API's shape and yields Anthropic-shaped events, so the loop does not know which one
it holds. A new provider is one more row here.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx2
from midstream.tools.wire.client import Dialect, ModelClient, Timeouts
from midstream.tools.wire.recording import Recorder

__all__ = ["PROVIDERS", "Provider", "client_for", "provider"]


@dataclass(frozen=True)
class Provider:
    """One row of the table."""

    name: str
    """What ``--provider`` says."""
    wire: str
    """``messages`` (the Messages API) or ``chat`` (Chat Completions)."""
    base_url: str
    """The hosted service, when no ``{PREFIX}_BASE_URL`` is set."""
    model: str
    """The model when no flag, setting or ``{PREFIX}_MODEL`` names one."""
    env_prefix: str
    """Its variables: ``{prefix}_API_KEY``, ``{prefix}_BASE_URL``, ``{prefix}_MODEL``."""
    key_header: str
    """The header that carries the key; ``authorization`` carries it as ``Bearer KEY``."""
    prompt_cache: bool
    """Whether requests carry ``cache_control`` markers (the other servers cache prefixes by themselves)."""
    missing_key: str
    """The line shown when the hosted service is asked for without a key."""

    @property
    def key_env(self) -> str:
        return f"{self.env_prefix}_API_KEY"

    @property
    def base_url_env(self) -> str:
        return f"{self.env_prefix}_BASE_URL"

    @property
    def model_env(self) -> str:
        return f"{self.env_prefix}_MODEL"

    def key_headers(self, api_key: str | None) -> dict[str, str]:
        if not api_key:
            return {}
        return {self.key_header: f"Bearer {api_key}" if self.key_header == "authorization" else api_key}


PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    Provider("anthropic", "messages", "https://api.anthropic.com", "claude-sonnet-5-5", "ANTHROPIC", "x-api-key",
             prompt_cache=True, missing_key="set ANTHROPIC_API_KEY to use the Anthropic API, or ANTHROPIC_BASE_URL "
             "for another Anthropic-compatible server (or try `midstream --demo`)."),
    Provider("openai", "chat", "https://api.openai.com/v1", "gpt-4.1", "OPENAI", "authorization",
             prompt_cache=False, missing_key="set OPENAI_API_KEY to use the OpenAI API, or OPENAI_BASE_URL for a "
             "local server (Ollama: http://localhost:11434/v1)."),
)}


def provider(name: str) -> Provider:
    """The row for ``name``; an unknown name is a ValueError naming the known ones."""
    if name not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name]


def _dialect(row: Provider, base_url: str) -> Dialect:
    if row.wire == "chat":  # imported only when used: start-up stays lean for the other wire
        from midstream.tools.wire.openai import ChatDialect

        return ChatDialect(row, base_url)
    from midstream.tools.wire.anthropic import MessagesDialect

    return MessagesDialect(row)


def client_for(name: str, *, base_url: str | None = None, api_key: str | None = None,
               timeouts: Timeouts | None = None, transport: httpx2.BaseTransport | None = None,
               recorder: Recorder | None = None) -> ModelClient:
    """The model client for provider ``name`` (its default base URL unless one is given)."""
    row = provider(name)
    url = base_url or row.base_url
    return ModelClient(_dialect(row, url), base_url=url, key_headers=row.key_headers(api_key),
                       timeouts=timeouts or Timeouts(),
                       transport=transport, recorder=recorder)
