"""One small tree of errors, each caught only where something can be done about it."""


class AsmError(Exception):
    """Base of every error asm raises on purpose; its message is meant for a person."""


class ConfigError(AsmError):
    """A setting is missing or malformed; the message names the variable."""


class BadInput(AsmError):
    """A command was given something it cannot use (not a number, not owner/name, closed issue...)."""


class AlreadyClaimed(AsmError):
    """Another worker holds the issue's claim."""


class ClaimLost(AsmError):
    """Our claim expired or was taken over while we worked: stop without touching the issue."""


class BudgetExceeded(AsmError):
    """The next model call could cross a spend or turn cap."""

    def __init__(self, message: str, *, cap_name: str, spent_usd: float, cap_usd: float) -> None:
        super().__init__(message)
        self.cap_name = cap_name
        self.spent_usd = spent_usd
        self.cap_usd = cap_usd


class TurnLimitReached(AsmError):
    """A role used every turn it was allowed without finishing."""


class TimeLimitReached(AsmError):
    """The run used up ASM_TASK_TIME_LIMIT."""


class ModelUnavailable(AsmError):
    """The model kept answering with transient errors (429, 529, 5xx) after every retry."""


class ModelRefused(AsmError):
    """The model ended its reply with a refusal: it declined to go on with this issue; asking again will not help."""


class PromptTooLong(AsmError):
    """The API counted the prompt above the model's context window (a 400): the conversation must shrink."""

    def __init__(self, message: str, counted_tokens: int | None) -> None:
        super().__init__(message)
        self.counted_tokens = counted_tokens  # the API's own count, when it said it


class FleetPaused(AsmError):
    """The model account cannot be used (no credit, key refused, model unknown): the whole fleet must pause."""


class CreditExhausted(FleetPaused):
    """The model account has no credit left."""


class WorkspaceError(AsmError):
    """A git operation on the workspace failed (clone, commit, push)."""


class BranchMoved(WorkspaceError):
    """The remote branch is not where the run found it: someone pushed meanwhile, and asm never overwrites that."""

    def __init__(self, branch: str, now: str | None) -> None:
        super().__init__(f"`{branch}` moved to {(now or 'a deletion')[:12]} while the run worked")
        self.branch, self.now = branch, now


class GitHubError(AsmError):
    """GitHub refused or failed a request after retries."""


class SandboxUnavailable(AsmError):
    """Tool commands cannot be confined on this machine (bwrap missing or refused); the worker must not start."""


class SecretInChange(AsmError):
    """The team's change holds one of asm's secrets; it is never pushed. The message names files, not the secret."""


class Untrusted(AsmError):
    """The issue was not asked for by someone asm may act for (ASM_TRUSTED_PERMISSION)."""
