"""Which wire a session speaks: ``--provider anthropic`` (Messages API) or ``openai`` (Chat Completions).

Both clients have one interface (``stream(body)`` yielding Anthropic-shaped events, ``abort``,
``close``) and take the request body in the Messages API's shape, so the loop does not know which
one it holds.
"""

from __future__ import annotations

from typing import Any

from midstream.tools.wire.model import ModelClient

__all__ = ["DEFAULT_BASE_URLS", "DEFAULT_OPENAI_MODEL", "PROVIDERS", "client_for"]

PROVIDERS = ("anthropic", "openai")
DEFAULT_OPENAI_MODEL = "gpt-4.1"
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com/v1"}


def client_for(provider: str, **settings: Any) -> ModelClient:
    """The model client for ``provider``; ``settings`` are ModelClient's keyword arguments."""
    if provider == "anthropic":
        return ModelClient(**settings)
    if provider == "openai":
        from midstream.tools.wire.openai import OpenAIClient

        return OpenAIClient(**settings)
    raise ValueError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
