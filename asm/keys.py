"""The issue key `owner/name#n`, and every name derived from it: lock, branch, workspace, Redis keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from asm.config import REPO_PATTERN
from asm.errors import BadInput

PREFIX = "asm:"
WORKERS = PREFIX + "workers"  # set of worker ids; each has a hash at worker_key(id)
QUEUED = PREFIX + "queued"  # hash: issue key -> JSON {task_id, queued_at, by}
RUNNING = PREFIX + "running"  # hash: issue key -> JSON {worker, stage, revision, started_at}
HISTORY = PREFIX + "history"  # list of JSON records of finished runs, newest first
METRICS = PREFIX + "metrics"  # hash: Prometheus series "name|label=value" -> number
PAUSED = PREFIX + "paused"  # string: why the fleet takes no new issues, while set
MODEL_RESTING = PREFIX + "model-unavailable"  # string with a TTL: the model API is down, wait until it expires
MODEL_OUTAGES = PREFIX + "model-outages"  # counter: outages in a row, for the backoff between them
RATE_LIMITS = PREFIX + "rate-limits"  # hash: GitHub resource (core, graphql) -> JSON budget as last seen
SCAN_NEXT = PREFIX + "scan:next"  # string: the repository a paced scan did not reach, where the next one starts


@dataclass(frozen=True, order=True)
class IssueRef:
    """One issue of one repository.

    GitHub ignores the case of a repository's name, so asm does too: the name is kept in lower case, and
    every key made from it (claim, queue, line, ledger) is the same however ASM_REPOS, a webhook, an App's
    installation or `asm enqueue` spelled it. Two spellings must never make two claims on one issue.
    """

    repo: str
    number: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "repo", self.repo.lower())

    @classmethod
    def parse(cls, repo: str, number: str | int) -> IssueRef:
        """Validate user input: `owner/name` and a positive issue number."""
        if not REPO_PATTERN.fullmatch(repo or ""):
            raise BadInput(f"repository {repo!r} is not in owner/name form")
        text = str(number).strip().lstrip("#")
        if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
            raise BadInput(f"issue {number!r} is not a positive number")
        return cls(repo, int(text))

    @property
    def key(self) -> str:
        return f"{self.repo}#{self.number}"

    @property
    def owner(self) -> str:
        return self.repo.split("/", 1)[0]

    @property
    def branch(self) -> str:
        return f"ai-feature/issue-{self.number}"

    @property
    def claim_key(self) -> str:
        return f"{PREFIX}claim:{self.key}"

    @property
    def ledger_key(self) -> str:
        return f"{PREFIX}ledger:{self.key}"

    @property
    def workspace_name(self) -> str:
        owner, name = self.repo.split("/", 1)
        return f"{owner}__{name}/issue-{self.number}"

    def __str__(self) -> str:
        return self.key


def worker_key(worker: str) -> str:
    return f"{PREFIX}worker:{worker}"


def approved_key(issue: IssueRef) -> str:
    """The approved pull request's text, kept so a retry after a crash can open it without rerunning."""
    return f"{PREFIX}approved:{issue.key}"


def attempts_key(issue: IssueRef) -> str:
    """How many runs of the issue started without reaching an end; a crash loop stops at a limit."""
    return f"{PREFIX}attempts:{issue.key}"


def vouched_key(issue: IssueRef) -> str:
    """Digests of the issue's title and body as the operator queued it with `asm enqueue`."""
    return f"{PREFIX}vouched:{issue.key}"


def reply_key(pull: IssueRef) -> str:
    """A follow-up's reply, saved before its push, so a retry after a crash posts it instead of working again."""
    return f"{PREFIX}reply:{pull.key}"


def seen_key(ref: IssueRef) -> str:
    """How a pull request of asm's, or an issue awaiting answers, looked when a scan last found it asking nothing."""
    return f"{PREFIX}seen:{ref.key}"


def scan_memory_key(repo: str) -> str:
    """What the scan's last full read of a repository found, and the ETags it read it under (asm.fleet.probe)."""
    return f"{PREFIX}scan:memory:{repo.lower()}"


def app_token_key(app_id: str, installation: int) -> str:
    """An installation's access token, sealed with the App's key, shared by the fleet (asm.github_app); with
    `:minting` after it, the lock of the one process minting the next."""
    return f"{PREFIX}app-token:{app_id}:{installation}"


def told_key(issue: IssueRef, what: str) -> str:
    """Set while a comment about `what` was made lately, so a repeating condition is said once."""
    return f"{PREFIX}told:{what}:{issue.key}"


def utc_day(moment: datetime | None = None) -> str:
    """The UTC day that daily spend caps count against."""
    return (moment or datetime.now(timezone.utc)).strftime("%Y-%m-%d")


def repo_day_spend_key(repo: str, day: str) -> str:
    return f"{PREFIX}spend:repo:{repo.lower()}:{day}"


def fleet_day_spend_key(day: str) -> str:
    return f"{PREFIX}spend:fleet:{day}"


def reservations_key(day: str) -> str:
    """Hash of the spend held by model calls in flight, fleet-wide."""
    return f"{PREFIX}reserved:{day}"


def transcripts_key(issue: IssueRef) -> str:
    """Hash: the issue's runs whose conversations are kept (`run:<n>` -> JSON record) and the next run's number."""
    return f"{PREFIX}transcripts:{issue.key}"


def transcript_key(issue: IssueRef, run: str) -> str:
    """Hash: one run's conversations, a field per step (`001`, `002`, ...) -> zlib-compressed JSON."""
    return f"{PREFIX}transcript:{issue.key}:{run}"
