"""Prices and usage: what a model call costs in USD."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from asm.errors import ConfigError

# The most output one model call may produce (its max_tokens): what bounds a call's cost.
MAX_OUTPUT_TOKENS = 8192


@dataclass(frozen=True)
class Price:
    """USD per million tokens, by kind of token."""

    input: float
    output: float
    cache_write: float
    cache_read: float


# Anthropic's list prices (USD per MTok), from its pricing and model pages. Cache writes are the
# 5-minute tier (what asm asks for). Check them against claude.com/pricing; ASM_PRICES overrides.
PRICES: dict[str, Price] = {
    "claude-fable-5-2": Price(8.0, 40.0, 10.0, 0.80),
    "claude-fable-5-1": Price(10.0, 50.0, 12.50, 0.25),
    "claude-mythos-5-1": Price(10.0, 50.0, 12.50, 0.25),
    "claude-fable-5": Price(10.0, 50.0, 12.50, 1.00),
    "claude-mythos-5": Price(10.0, 50.0, 12.50, 1.00),
    "claude-opus-5-5": Price(4.0, 20.0, 5.0, 0.40),
    "claude-opus-5": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-8": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-7": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-6": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-5": Price(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-1": Price(15.0, 75.0, 18.75, 1.50),
    "claude-opus-4": Price(15.0, 75.0, 18.75, 1.50),
    "claude-sonnet-5-5": Price(2.0, 10.0, 2.50, 0.20),
    "claude-sonnet-5": Price(2.0, 10.0, 2.50, 0.20),
    "claude-sonnet-4-6": Price(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4-5": Price(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4": Price(3.0, 15.0, 3.75, 0.30),
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
}


# Context windows in tokens, from the model pages: every 5.x model and Opus 4.6 onwards, Sonnet 4.6
# included, reads 1M tokens; Sonnet 4.5, Haiku 4.5 and older read 200k, which is also what a model
# this table does not know is assumed to read (a smaller guess trims early; a larger one fails late).
CONTEXT_WINDOWS: dict[str, int] = {
    **dict.fromkeys(("claude-fable-5-2", "claude-mythos-5-2", "claude-fable-5-1", "claude-mythos-5-1", "claude-fable-5",
                     "claude-mythos-5", "claude-opus-5-5", "claude-opus-5", "claude-opus-4-8", "claude-opus-4-7",
                     "claude-opus-4-6", "claude-sonnet-5-5", "claude-sonnet-5", "claude-sonnet-4-6"), 1_000_000),
    **dict.fromkeys(("claude-opus-4-5", "claude-opus-4-1", "claude-opus-4", "claude-sonnet-4-5", "claude-sonnet-4",
                     "claude-haiku-4-5"), 200_000),
}
DEFAULT_CONTEXT_WINDOW = 200_000


def context_window_for(model: str) -> int:
    """How many tokens a request to `model` may hold, input and output together."""
    dated = re.fullmatch(r"(.+)-\d{8}", model)
    return CONTEXT_WINDOWS.get(model) or CONTEXT_WINDOWS.get(dated.group(1) if dated else "", DEFAULT_CONTEXT_WINDOW)


def money(usd: float) -> str:
    """Dollars as people read them: $5.00, $0.135, $0.0231 (never rounded into a different cap)."""
    text = f"{usd:.4f}".rstrip("0")
    return f"${text}{'0' * max(0, 2 - len(text.split('.')[1]))}"


def parse_prices(text: str) -> dict[str, Price]:
    """`model=input,output,cache_write,cache_read;...` (USD per MTok), as ASM_PRICES holds it."""
    prices: dict[str, Price] = {}
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        model, sep, numbers = entry.partition("=")
        try:
            values = [float(n) for n in numbers.split(",")]
        except ValueError:
            values = []
        if not sep or not model.strip() or len(values) != 4 or not all(math.isfinite(v) and v >= 0 for v in values):
            raise ConfigError(
                f"ASM_PRICES: {entry!r} is not model=input,output,cache_write,cache_read (USD per MTok)"
            )
        prices[model.strip()] = Price(*values)
    return prices


def price_for(model: str, overrides: Mapping[str, Price] | None = None, variable: str = "ASM_MODEL") -> Price:
    """The price of a model: an override, else the table, matching dated ids by their family prefix.

    An unpriced model is a ConfigError naming `variable`, the setting that asked for it."""
    table = {**PRICES, **(overrides or {})}
    if model in table:
        return table[model]
    # A dated snapshot is priced as its model ("claude-sonnet-4-5-20250929" as "claude-sonnet-4-5"); any
    # other unknown id fails loudly rather than borrowing a family's price and misjudging the caps.
    dated = re.fullmatch(r"(.+)-\d{8}", model)
    if dated and dated.group(1) in table:
        return table[dated.group(1)]
    raise ConfigError(f"{variable}={model!r} has no known price; add it to ASM_PRICES")


@dataclass(frozen=True)
class Usage:
    """Tokens one or more model calls used, by kind."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @classmethod
    def from_api(cls, usage: object) -> Usage:
        """From the SDK's `message.usage` (missing cache fields count as 0)."""
        return cls(
            input_tokens=getattr(usage, "input_tokens", 0) or 0,
            output_tokens=getattr(usage, "output_tokens", 0) or 0,
            cache_write_tokens=getattr(usage, "cache_creation_input_tokens", 0) or 0,
            cache_read_tokens=getattr(usage, "cache_read_input_tokens", 0) or 0,
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_write_tokens + self.cache_read_tokens

    def cost(self, price: Price) -> float:
        """USD these tokens cost at `price`."""
        return (
            self.input_tokens * price.input
            + self.output_tokens * price.output
            + self.cache_write_tokens * price.cache_write
            + self.cache_read_tokens * price.cache_read
        ) / 1_000_000

    def saved_by_cache(self, price: Price) -> float:
        """USD caching saved against sending every cached token as plain input (negative if it cost)."""
        read_savings = self.cache_read_tokens * (price.input - price.cache_read)
        write_premium = self.cache_write_tokens * (price.cache_write - price.input)
        return (read_savings - write_premium) / 1_000_000
