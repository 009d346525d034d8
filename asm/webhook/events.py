"""What a verified delivery tells asm, read from GitHub's payload alone: no GitHub request is made here.

A label becomes a queued run at once (`Told.queue`); a comment, a review or a finished check becomes a
look at that pull request or issue in a task (`Told.look`), which reads it whole as the scan would. Who
labelled, reviewed or answered is checked by the task and by the run, as for the scan: a payload's word
on people is never taken for a permission.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from asm.config import REPO_PATTERN
from asm.conversation.threads import BRANCH
from asm.errors import AsmError
from asm.github import AI_FAILED, IN_PROGRESS, IN_REVIEW, NEEDS_CLARIFICATION
from asm.keys import IssueRef

# The events and actions asm acts on; every other one is answered and ignored.
ACTIONS = {
    "issues": ("labeled",),
    "issue_comment": ("created", "edited"),
    "pull_request_review": ("submitted",),
    "pull_request_review_comment": ("created",),
    "check_suite": ("completed",),
    "check_run": ("completed",),
}


class Unreadable(AsmError):
    """The payload is not shaped like GitHub's for its event."""


@dataclass(frozen=True)
class Target:
    """A pull request of asm's (`is_pull`), or an issue that may be waiting for answers, to look at again."""

    ref: IssueRef
    is_pull: bool


@dataclass(frozen=True)
class Told:
    """What one delivery asks of asm: queue an issue's run, look at pull requests or issues again, answer a
    ping, or nothing (`why` says why, for the log and for GitHub's list of recent deliveries)."""

    kind: Literal["queue", "look", "pong", "ignore"]
    targets: tuple[Target, ...] = ()
    why: str = ""
    repo: str = ""
    labels: tuple[str, ...] = ()  # the labelled issue's, for its priority in the line


def read(event: str, payload: Mapping[str, Any], repos: tuple[str, ...] | None, ready_label: str) -> Told:
    """What a delivery of `event` with `payload` tells asm, for the repositories `repos` (ASM_REPOS; None: every
    repository GitHub delivers for, as a GitHub App's webhook hears only its installations')."""
    if event == "ping":
        return Told("pong", why="pong")
    action = payload.get("action")
    if event not in ACTIONS:
        return Told("ignore", why=f"{event or 'an unnamed event'} is not an event asm acts on")
    if action not in ACTIONS[event]:
        return Told("ignore", why=f"{event}.{action} is not an action asm acts on")
    full_name = _text(payload, "repository", "full_name")
    if repos is None:
        repo = full_name if REPO_PATTERN.fullmatch(full_name) else None
    else:
        repo = next((known for known in repos if known.lower() == full_name.lower()), None)
    if repo is None:
        return Told("ignore", why=f"{full_name} is not in ASM_REPOS")
    told = _READERS[event](payload, repo, ready_label)
    return Told(told.kind, told.targets, told.why, repo, told.labels)


_ASMS_LABELS = {IN_PROGRESS, IN_REVIEW, NEEDS_CLARIFICATION, AI_FAILED}


def _labeled(payload: Mapping[str, Any], repo: str, ready_label: str) -> Told:
    label, issue = _text(payload, "label", "name"), _object(payload, "issue")
    ref = IssueRef(repo, _number(issue))
    labels = tuple(_text(each, "name") for each in _list(issue, "labels"))
    ready = ready_label.casefold()  # GitHub's label names ignore case
    # Another label on an issue labelled ready (a priority label) queues it too: queuing one already
    # waiting only moves it up its line, when its priority is now higher. asm's own labels ask for nothing.
    if label.casefold() != ready and (ready not in {name.casefold() for name in labels}
                                      or label.casefold() in _ASMS_LABELS):
        return Told("ignore", why=f"{ref} labelled {label!r}, not the ready label")
    if "pull_request" in issue or _text(issue, "state") != "open":
        return Told("ignore", why=f"{ref} is not an open issue")
    return Told("queue", (Target(ref, False),), f"{ref} labelled {label}", labels=labels)


def _commented(payload: Mapping[str, Any], repo: str, ready_label: str) -> Told:
    issue = _object(payload, "issue")
    ref = IssueRef(repo, _number(issue))
    if _text(issue, "state") != "open":
        return Told("ignore", why=f"{ref} is closed")
    if "pull_request" in issue:
        return Told("look", (Target(ref, True),), f"a comment on pull request {ref}")
    labels = {_text(label, "name").casefold() for label in _list(issue, "labels")}
    if NEEDS_CLARIFICATION.casefold() not in labels:
        return Told("ignore", why=f"{ref} is not waiting for answers")
    return Told("look", (Target(ref, False),), f"a comment on {ref}, which waits for answers")


def _reviewed(payload: Mapping[str, Any], repo: str, ready_label: str) -> Told:
    pull = _object(payload, "pull_request")
    ref = IssueRef(repo, _number(pull))
    if _text(pull, "state") != "open" or not BRANCH.fullmatch(_text(pull, "head", "ref")):
        return Told("ignore", why=f"{ref} is not an open pull request of asm's")
    return Told("look", (Target(ref, True),), f"a review on pull request {ref}")


def _checked(payload: Mapping[str, Any], repo: str, ready_label: str) -> Told:
    """A check suite or run finished: each pull request of asm's it names, in this repository."""
    kind = "check_suite" if "check_suite" in payload else "check_run"
    pulls = _list(_object(payload, kind), "pull_requests")
    targets = tuple(dict.fromkeys(
        Target(IssueRef(repo, _number(pull)), True) for pull in pulls
        if BRANCH.fullmatch(_text(pull, "head", "ref")) and _in_repo(pull, repo)))
    if not targets:
        return Told("ignore", why=f"a {kind.replace('_', ' ')} on no pull request of asm's")
    return Told("look", targets, f"a {kind.replace('_', ' ')} finished on {', '.join(str(t.ref) for t in targets)}")


def _in_repo(pull: Mapping[str, Any], repo: str) -> bool:
    """Whether a check's pull request is of this repository (GitHub also lists those of forks that share its head)."""
    url = _text(pull, "base", "repo", "url") if isinstance(pull.get("base"), Mapping) else ""
    return not url or url.lower().endswith(f"/repos/{repo.lower()}")


_READERS = {"issues": _labeled, "issue_comment": _commented, "pull_request_review": _reviewed,
            "pull_request_review_comment": _reviewed, "check_suite": _checked, "check_run": _checked}


# -- reading GitHub's JSON, refusing what is not shaped like it ------------------------------------------


def _object(payload: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    value: Any = payload
    for name in path:
        value = value.get(name) if isinstance(value, Mapping) else None
    if not isinstance(value, Mapping):
        raise Unreadable(f"no object at {'.'.join(path)}")
    return value


def _text(payload: Mapping[str, Any], *path: str) -> str:
    value = _object(payload, *path[:-1]).get(path[-1]) if path[:-1] else payload.get(path[-1])
    if not isinstance(value, str):
        raise Unreadable(f"no text at {'.'.join(path)}")
    return value


def _number(payload: Mapping[str, Any]) -> int:
    value = payload.get("number")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Unreadable("no issue or pull request number")
    return value


def _list(payload: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = payload.get(name)
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise Unreadable(f"no list at {name}")
    return value
