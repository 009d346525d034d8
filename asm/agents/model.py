"""One Messages API call, with asm's retry policy and errors sorted into what the fleet can act on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import anthropic
from anthropic.types import Message

from asm.errors import AsmError, CreditExhausted, FleetPaused, ModelUnavailable
from asm.spend.cost import MAX_OUTPUT_TOKENS

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
# 408, 409 and 429 are Anthropic's "try again" answers; 5xx includes 529 overloaded.
TRANSIENT = (anthropic.RateLimitError, anthropic.InternalServerError, anthropic.APIConnectionError,
             anthropic.RequestTimeoutError, anthropic.ConflictError)


def is_credit_problem(error: anthropic.APIStatusError) -> bool:
    """The account cannot pay: retrying or failing the issue would not help, pausing the fleet does."""
    message = str(error.message).lower()
    return error.status_code == 402 or "credit balance" in message or "billing" in message


def retry_after(error: anthropic.APIError) -> float | None:
    """Seconds the server asked us to wait, if it said."""
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class ModelClient:
    """Calls the model for every role; the one place retries and API errors are decided."""

    def __init__(
        self,
        client: anthropic.Anthropic,
        model: str,
        max_retries: int,
        backoff_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        self.client = client
        self.model = model
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self.on_retry = on_retry
        self.retries = 0

    def create(self, *, system: Sequence[dict[str, Any]], messages: Sequence[dict[str, Any]],
               tools: Sequence[dict[str, Any]], checkpoint: Callable[[], None] = lambda: None) -> Message:
        """One reply; transient errors retried with doubling backoff, honouring Retry-After.

        `checkpoint` runs before each retry: a run past its deadline or its claim stops there,
        instead of retrying what may have been its own interruption.
        """
        delay = self.backoff_seconds
        for attempt in range(self.max_retries + 1):
            if attempt:
                checkpoint()
            try:
                return self.client.messages.create(
                    model=self.model,
                    max_tokens=MAX_OUTPUT_TOKENS,
                    system=list(system),
                    messages=list(messages),
                    tools=list(tools),
                )
            except TRANSIENT as error:
                if attempt == self.max_retries:
                    raise ModelUnavailable(f"the model API kept failing ({describe(error)})") from None
                wait = min(max(delay, retry_after(error) or 0.0), MAX_BACKOFF_SECONDS)
                log.warning("model call failed (%s); retry %d in %.1fs", describe(error), attempt + 1, wait)
                self.retries += 1
                self.on_retry()
                self.sleep(wait)
                delay *= 2
            except anthropic.AuthenticationError:
                raise FleetPaused("the model API refused ANTHROPIC_API_KEY") from None
            except (anthropic.PermissionDeniedError, anthropic.NotFoundError) as error:
                # Every issue would meet the same answer: it is the account or ASM_MODEL, not this issue.
                raise FleetPaused(f"the model API refused the account or ASM_MODEL={self.model} "
                                  f"({describe(error)}: {error.message})") from None
            except anthropic.APIStatusError as error:
                if is_credit_problem(error):
                    raise CreditExhausted(f"the model account is out of credit: {error.message}") from None
                raise AsmError(f"the model API refused the request ({describe(error)})") from None
        raise AssertionError("unreachable")


def describe(error: anthropic.APIError) -> str:
    """A short, secret-free account of an API error."""
    status = getattr(error, "status_code", None)
    kind = type(error).__name__
    return f"{kind} {status}" if status else kind
