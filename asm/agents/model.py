"""One Messages API call, with asm's retry policy and errors sorted into what the fleet can act on."""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import anthropic
from anthropic.types import Message, MessageParam, TextBlockParam, ToolUnionParam

from asm.errors import AsmError, CreditExhausted, FleetPaused, ModelUnavailable, PromptTooLong
from asm.spend.cost import MAX_OUTPUT_TOKENS, context_window_for

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
# The SDK's rules: a server's retry-after above this is not waited for (the backoff is), and the backoff
# is cut by up to this fraction at random.
RETRY_AFTER_MAX_SECONDS = 60.0
BACKOFF_JITTER = 0.25
# 408, 409 and 429 are Anthropic's "try again" answers; 5xx includes 529 overloaded.
# The API's 400 for a prompt above the context window: "prompt is too long: 208000 tokens > 200000 maximum".
PROMPT_TOO_LONG = re.compile(r"prompt is too long(?:: (\d+) tokens)?")
TRANSIENT = (anthropic.RateLimitError, anthropic.InternalServerError, anthropic.APIConnectionError,
             anthropic.RequestTimeoutError, anthropic.ConflictError)
# The models whose thinking blocks are bound to the conversation before them (the API's "prefix check"):
# editing an earlier turn invalidates every later block. From the prefix-check page's supported models.
PRESERVED_THINKING = ("claude-fable-5-2", "claude-mythos-5-2", "claude-fable-5-1", "claude-mythos-5-1",
                      "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5")
THINKING_BINDING_BETA = "thinking-binding-controls-2026-08-01"


def is_credit_problem(error: anthropic.APIStatusError) -> bool:
    """The account cannot pay: retrying or failing the issue would not help, pausing the fleet does."""
    message = str(error.message).lower()
    return error.status_code == 402 or "credit balance" in message or "billing" in message


def headers_of(error: anthropic.APIError) -> Any:
    response = getattr(error, "response", None)
    return response.headers if response is not None else {}


def retry_after(error: anthropic.APIError) -> float | None:
    """Seconds the server asked us to wait, read as the SDK reads them: `retry-after-ms` first, then
    `retry-after` in seconds or as an HTTP date."""
    headers = headers_of(error)
    for name, seconds_per_unit in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return float(headers.get(name)) * seconds_per_unit
        except (TypeError, ValueError):
            pass
    date = email.utils.parsedate_tz(headers.get("retry-after") or "")
    return max(0.0, email.utils.mktime_tz(date) - time.time()) if date else None


def retry_wait(error: anthropic.APIError, backoff: float) -> float:
    """How long to wait before the next attempt, as the SDK decides it: what the server asked for, when it
    asked for more than nothing and at most a minute; otherwise the backoff, less up to a quarter at
    random so that the fleet's workers do not all come back at once."""
    asked = retry_after(error)
    if asked is not None and 0 < asked <= RETRY_AFTER_MAX_SECONDS:
        return asked
    return min(backoff, MAX_BACKOFF_SECONDS) * (1 - BACKOFF_JITTER * random.random())


def should_retry(error: anthropic.APIError) -> bool:
    """The server's `x-should-retry: true|false` when it says so (the SDK obeys it too), else whether the
    error is one of the transient ones."""
    verdict: str | None = headers_of(error).get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return isinstance(error, TRANSIENT)


def preserves_thinking(model: str) -> bool:
    return any(re.fullmatch(rf"{family}(-\d{{8}})?", model) for family in PRESERVED_THINKING)


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
        context_window: int | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep
        self.on_retry = on_retry
        self.context_window = context_window or context_window_for(model)

    def create(self, *, system: Sequence[TextBlockParam], messages: Sequence[MessageParam],
               tools: Sequence[ToolUnionParam], checkpoint: Callable[[], None] = lambda: None,
               history_edited: bool = False) -> Message:
        """One reply; transient errors retried with doubling backoff, honouring Retry-After.

        `checkpoint` runs before each retry: a run past its deadline or its claim stops there,
        instead of retrying what may have been its own interruption. `history_edited` says asm
        changed earlier turns of this conversation (the context guard trimmed them).
        """
        delay = self.backoff_seconds
        for attempt in range(self.max_retries + 1):
            if attempt:
                checkpoint()
            try:
                # Never a stream; the **options make the SDK's stream overloads ambiguous (Any) to mypy.
                reply: Message = self.client.messages.create(
                    model=self.model,
                    max_tokens=MAX_OUTPUT_TOKENS,
                    system=list(system),
                    messages=list(messages),
                    tools=list(tools),
                    **self.thinking_options(history_edited),
                )
                return reply
            except anthropic.APIError as error:
                if attempt == self.max_retries or not should_retry(error):
                    raise self.as_asm_error(error) from None
                wait = retry_wait(error, delay)
                log.warning("model call failed (%s); retry %d in %.1fs", describe(error), attempt + 1, wait)
                self.on_retry()
                self.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def thinking_options(self, history_edited: bool) -> dict[str, Any]:
        """Once earlier turns were edited, the thinking blocks after the edit fail the API's prefix check:
        ask it to drop those blocks rather than refuse the request (the documented remedy; asm itself
        sends every block back exactly as it came). Only models that bind thinking get the option."""
        if not history_edited or not preserves_thinking(self.model):
            return {}
        return {"thinking": {"type": "adaptive", "block_binding": {"prefix_mismatch_behavior": "drop_block"}},
                "extra_headers": {"anthropic-beta": THINKING_BINDING_BETA}}

    def as_asm_error(self, error: anthropic.APIError) -> AsmError:
        """The error the fleet can act on, for an API error that is not (or no longer) retried."""
        if isinstance(error, TRANSIENT):
            why = "kept failing" if should_retry(error) else "failed and asked not to be retried"
            return ModelUnavailable(f"the model API {why} ({describe(error)})")
        if isinstance(error, anthropic.AuthenticationError):
            return FleetPaused("the model API refused ANTHROPIC_API_KEY")
        if isinstance(error, (anthropic.PermissionDeniedError, anthropic.NotFoundError)):
            # Every issue would meet the same answer: it is the account or the model, not this issue.
            return FleetPaused(f"the model API refused the account or the model {self.model}, set by ASM_MODEL or a "
                               f"role's ASM_MODEL_<ROLE> ({describe(error)}: {error.message})")
        if isinstance(error, anthropic.APIStatusError) and is_credit_problem(error):
            return CreditExhausted(f"the model account is out of credit: {error.message}")
        if isinstance(error, anthropic.BadRequestError) and (long := PROMPT_TOO_LONG.search(said(error))):
            return PromptTooLong(f"the model API counted the prompt above its context window{said(error)}",
                                 int(long.group(1)) if long.group(1) else None)
        return AsmError(f"the model API refused the request ({describe(error)}{said(error)})")


def said(error: anthropic.APIError) -> str:
    """What the API said was wrong with the request, when it said: it names a field, never a secret."""
    body = getattr(error, "body", None)
    message = body.get("error", {}).get("message") if isinstance(body, dict) else None
    return f": {message}" if isinstance(message, str) and message else ""


def describe(error: anthropic.APIError) -> str:
    """A short, secret-free account of an API error."""
    status = getattr(error, "status_code", None)
    kind = type(error).__name__
    return f"{kind} {status}" if status else kind
