"""Token usage: per-reply lines, session totals, cache hit ratio, and cost at list prices.

Every usage field is optional (llama.cpp's server omits cache fields). Prices are USD per
million tokens by model family, list prices as published for the 4.5-generation models
(cache writes 1.25× input for the 5-minute TTL and 2× for 1 hour, cache reads 0.1× input);
a family we have no price for shows tokens without a cost rather than a guess.

A request is priced by the model the server says ran it (``message_start``), not by the name we
asked for: a proxy or a local server may run something else, and a free local model has no price.
Every request that was answered counts, also one rolled back or interrupted: it was billed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PRICES", "Usage", "price_for"]

# family: (input, output) in USD per million tokens
PRICES: dict[str, tuple[float, float]] = {
    "opus": (5.0, 25.0),
    "sonnet": (3.0, 15.0),
    "haiku": (1.0, 5.0),
}


def price_for(model: str) -> tuple[float, float] | None:
    return next((price for family, price in PRICES.items() if family in model), None)


@dataclass
class Usage:
    """Token counts of one reply, or the running total of a session."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    requests: int = 0
    """Requests counted in this total (see ``billed``)."""
    dollars: float | None = 0.0
    """Their cost; None once any of them ran on a model we have no price for."""

    @classmethod
    def billed(cls, usage: dict[str, Any], model: str) -> Usage:
        """One request as billed, priced by ``model``, the model the server reported."""
        one = cls.from_api(usage)
        one.requests = 1
        one.dollars = one.cost(model) if model else None
        return one

    @classmethod
    def from_api(cls, usage: dict[str, Any]) -> Usage:
        creation = usage.get("cache_creation") or {}
        one_hour = int(creation.get("ephemeral_1h_input_tokens") or 0)
        return cls(
            input=int(usage.get("input_tokens") or 0),
            output=int(usage.get("output_tokens") or 0),
            cache_read=int(usage.get("cache_read_input_tokens") or 0),
            cache_write=int(usage.get("cache_creation_input_tokens") or 0) - one_hour,
            cache_write_1h=one_hour,
        )

    def __iadd__(self, other: Usage) -> Usage:
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write
        self.cache_write_1h += other.cache_write_1h
        self.requests += other.requests
        self.dollars = None if self.dollars is None or other.dollars is None else self.dollars + other.dollars
        return self

    @property
    def prompt_tokens(self) -> int:
        return self.input + self.cache_read + self.cache_write + self.cache_write_1h

    @property
    def hit_ratio(self) -> float | None:
        """cache_read / (cache_read + cache_creation + input): the share of the prompt read from cache."""
        return self.cache_read / self.prompt_tokens if self.prompt_tokens else None

    def cost(self, model: str) -> float | None:
        price = price_for(model)
        if price is None:
            return None
        per_input, per_output = price[0] / 1e6, price[1] / 1e6
        return (self.input * per_input + self.output * per_output + self.cache_read * per_input * 0.1
                + self.cache_write * per_input * 1.25 + self.cache_write_1h * per_input * 2.0)

    def describe(self, model: str | None = None) -> str:
        """``2 requests · 1,234 in · 56 out · cache 10,000 read / 300 written (hit 0.87) · $0.0123``.

        Priced by ``model`` when given, else by what each request was billed (no cost if unknown)."""
        parts = [f"{self.requests} request{'s' * (self.requests != 1)}"] if self.requests > 1 else []
        parts += [f"{self.input:,} in", f"{self.output:,} out"]
        written = self.cache_write + self.cache_write_1h
        if self.cache_read or written:
            ratio = f" (hit {self.hit_ratio:.2f})" if self.hit_ratio is not None else ""
            parts.append(f"cache {self.cache_read:,} read / {written:,} written{ratio}")
        if model is not None:
            cost = self.cost(model)
            parts.append(f"${cost:.4f}" if cost is not None else "cost unknown for this model")
        elif self.dollars is not None and self.requests:
            parts.append(f"${self.dollars:.4f}")
        return " · ".join(parts)
