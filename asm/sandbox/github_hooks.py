"""The sandbox GitHub's webhooks: each change asm listens for, posted and signed as GitHub's Hookshot posts it.

A hook (`Hooks.add`) hears every repository, like an organisation's or a GitHub App's. The state tells
`Hooks` of each change where it stores it (an issue or pull request record, a check run); the
deliveries go out in order from one thread, right after the change, never inside it, each with
GitHub's headers (`X-GitHub-Event`, `X-GitHub-Delivery`, `X-Hub-Signature-256` and the older
`X-Hub-Signature`) and a payload built by the same `github_payloads` the REST API serves. Every
delivery is kept with the answer it got, as GitHub's "Recent deliveries" list keeps it.

The events sent are those asm acts on or could be told: `issues` (labeled, unlabeled, closed, reopened),
`issue_comment` (created), `pull_request_review` (submitted), `pull_request_review_comment` (created),
`check_run` (completed) and `check_suite` (completed), and `ping` when a hook is added.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import requests

from asm.sandbox import github_payloads as payloads
from asm.sandbox.github_payloads_checks import app as app_payload
from asm.sandbox.github_payloads_checks import check_run as check_run_payload
from asm.sandbox.github_payloads_reviews import review as review_payload
from asm.sandbox.github_payloads_reviews import review_comment as review_comment_payload
from asm.sandbox.github_people import BOT_LOGIN
from asm.sandbox.github_records import CheckRun, Comment, Issue, IssueEvent, Review, ReviewComment
from asm.sandbox.github_state import GitHubState

TIMEOUT_SECONDS = 10.0  # GitHub's: a hook that has not answered by then failed
ISSUE_EVENTS = ("labeled", "unlabeled", "closed", "reopened")
ZEN = "Design for failure."

Payload = dict[str, Any]


@dataclass(frozen=True)
class Hook:
    """Where deliveries go, the secret they are signed with, and the events it wants ("*": all)."""

    id: int
    url: str
    secret: str
    events: frozenset[str]

    def wants(self, event: str) -> bool:
        return event == "ping" or "*" in self.events or event in self.events


@dataclass(frozen=True)
class Delivery:
    """One delivery as GitHub lists it: what was sent, and what came back."""

    guid: str
    hook_id: int
    event: str
    action: str
    repo: str
    changed_at: float  # time.monotonic() of the change it tells of
    sent_at: float  # time.monotonic() when it was posted
    status: int | None  # None: no answer (refused, reset, timed out)
    answer: str
    seconds: float


@dataclass(frozen=True)
class _Pending:
    event: str
    action: str
    repo: str
    changed_at: float
    build: Callable[[], Payload]
    hooks: tuple[Hook, ...]  # those that wanted it when it happened


class Hooks:
    """The webhooks of one sandbox GitHub; `state.hooks` once attached (`attach`)."""

    def __init__(self, state: GitHubState, api: str) -> None:
        self.state = state
        self.api = api.rstrip("/")
        self._hooks: list[Hook] = []
        self._last_id = 0
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self._thread = threading.Thread(target=self._deliver_all, name="sandbox-webhooks", daemon=True)
        self._session = requests.Session()

    def attach(self) -> Hooks:
        """Start delivering, and have the state tell of its changes."""
        self._thread.start()
        self.state.hooks = self
        return self

    def close(self) -> None:
        self.state.hooks = None
        self._queue.put(None)
        self._thread.join(timeout=TIMEOUT_SECONDS + 5)
        self._session.close()

    def add(self, url: str, secret: str, events: Iterable[str] = ("*",)) -> Hook:
        """A new hook; GitHub pings it at once."""
        with self._lock:
            self._last_id += 1
            hook = Hook(self._last_id, url, secret, frozenset(events))
            self._hooks.append(hook)
        self._put("ping", "", "", lambda: {"zen": ZEN, "hook_id": hook.id,
                                           "hook": {"type": "Organization", "id": hook.id, "active": True,
                                                    "events": sorted(hook.events), "config": {
                                                        "url": url, "content_type": "json", "insecure_ssl": "0"}}},
                  only=hook)
        return hook

    @property
    def hooks(self) -> list[Hook]:
        with self._lock:
            return list(self._hooks)

    def remove(self, hook: Hook) -> None:
        """The hook hears nothing more (what was queued for it before still goes)."""
        with self._lock:
            self._hooks = [kept for kept in self._hooks if kept is not hook]

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every change told so far has been delivered; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # -- what the state tells (under its lock: only queue here) -----------------------------------

    def issue_changed(self, full_name: str, before: Issue | None, after: Issue) -> None:
        """An issue or pull request record replaced `before` (None: a new one): queue what GitHub would send."""
        seen = len(before.events) if before is not None else 0
        for entry in after.events[seen:]:
            if entry.event in ISSUE_EVENTS and after.pull is None:
                self._put("issues", entry.event, full_name, partial(self._issue_event, full_name, after, entry))
        said = {comment.id for comment in before.comments} if before is not None else set()
        for comment in after.comments:
            if comment.id not in said:
                self._put("issue_comment", "created", full_name,
                          partial(self._comment_event, full_name, after, comment))
        if after.pull is None:
            return
        reviewed = {review.id: review for review in before.pull.reviews} if before and before.pull else {}
        for review in after.pull.reviews:
            earlier = reviewed.get(review.id)
            if review.state == "PENDING" or (earlier is not None and earlier.state != "PENDING"):
                continue
            for line in review.comments:
                self._put("pull_request_review_comment", "created", full_name,
                          partial(self._review_comment_event, full_name, after, line))
            self._put("pull_request_review", "submitted", full_name,
                      partial(self._review_event, full_name, after, review))

    def check_run_changed(self, full_name: str, before: CheckRun | None, after: CheckRun) -> None:
        """A check run was made or changed: once it completes, `check_run.completed`, and `check_suite.completed`
        when it was the last of its suite to finish."""
        if after.status != "completed" or (before is not None and before.status == "completed"):
            return
        self._put("check_run", "completed", full_name, lambda: {
            "check_run": check_run_payload(self.api, self.state, full_name, after, self._heads(full_name)),
            "sender": self._user(BOT_LOGIN)})
        suite = [run for run in self.state.check_runs(full_name, after.head_sha) if run.suite_id == after.suite_id]
        if all(run.status == "completed" for run in suite):
            self._put("check_suite", "completed", full_name, lambda: {
                "check_suite": self._suite(full_name, after, suite), "sender": self._user(BOT_LOGIN)})

    # -- payloads, built on the delivering thread from the records as they were --------------------

    def _issue_event(self, full_name: str, record: Issue, entry: IssueEvent) -> Payload:
        label = {"label": payloads.label(self.api, full_name, entry.label)} if entry.label is not None else {}
        return {"issue": self._issue(full_name, record), **label, "sender": self._user(entry.actor)}

    def _comment_event(self, full_name: str, record: Issue, comment: Comment) -> Payload:
        return {"issue": self._issue(full_name, record),
                "comment": payloads.comment(self.api, self.state, full_name, record.number, comment),
                "sender": self._user(comment.author)}

    def _review_comment_event(self, full_name: str, record: Issue, line: ReviewComment) -> Payload:
        return {"comment": review_comment_payload(self.api, self.state, full_name, record.number, line),
                "pull_request": self._pull(full_name, record), "sender": self._user(line.author)}

    def _review_event(self, full_name: str, record: Issue, review: Review) -> Payload:
        return {"review": review_payload(self.api, self.state, full_name, record.number, review),
                "pull_request": self._pull(full_name, record), "sender": self._user(review.author)}

    def _user(self, login: str) -> Payload:
        return payloads.user(self.api, self.state.web_url, login)

    def _issue(self, full_name: str, record: Issue) -> Payload:
        return payloads.issue(self.api, self.state, full_name, record)

    def _heads(self, full_name: str) -> dict[str, str]:
        return self.state.branch_heads(full_name)

    def _pull(self, full_name: str, record: Issue) -> Payload:
        return payloads.pull(self.api, self.state, full_name, record, self._heads(full_name), BOT_LOGIN)

    def _suite(self, full_name: str, last: CheckRun, runs: list[CheckRun]) -> Payload:
        conclusions = [run.conclusion for run in runs]
        worst = next((c for c in ("failure", "timed_out", "cancelled", "action_required") if c in conclusions),
                     "success")
        heads = self._heads(full_name)
        branch = next((name for name, sha in heads.items() if sha == last.head_sha), None)
        pulls = check_run_payload(self.api, self.state, full_name, last, heads)["pull_requests"]
        return {"id": last.suite_id, "node_id": f"CS_sandbox{last.suite_id}", "head_branch": branch,
                "head_sha": last.head_sha, "status": "completed", "conclusion": worst,
                "url": f"{self.api}/repos/{full_name}/check-suites/{last.suite_id}",
                "pull_requests": pulls, "app": app_payload(self.api, self.state.web_url, last.app),
                "latest_check_runs_count": len(runs),
                "check_runs_url": f"{self.api}/repos/{full_name}/check-suites/{last.suite_id}/check-runs"}

    # -- delivering ---------------------------------------------------------------------------------

    def _put(self, event: str, action: str, repo: str, build: Callable[[], Payload], only: Hook | None = None) -> None:
        with self._lock:
            hooks = tuple(hook for hook in self._hooks if hook.wants(event) and only in (None, hook))
            if not hooks:
                return
            self._busy += 1
        changed_at = time.monotonic()

        def whole() -> Payload:
            body = {"action": action, **build()} if action else build()
            if repo:
                body["repository"] = payloads.repo(self.api, self.state, self.state.repo(repo), BOT_LOGIN)
                body.setdefault("organization", {"login": repo.split("/")[0]})
            return body

        self._queue.put(_Pending(event, action, repo, changed_at, whole, hooks))

    def _deliver_all(self) -> None:
        while (pending := self._queue.get()) is not None:
            try:
                self._deliver(pending)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _deliver(self, pending: _Pending) -> None:
        hooks = pending.hooks
        try:
            body = json.dumps(pending.build()).encode()
        except Exception as problem:  # noqa: BLE001 (a payload's bug must not stop every later delivery)
            for hook in hooks:
                self._keep(Delivery(str(uuid.uuid4()), hook.id, pending.event, pending.action, pending.repo,
                                    pending.changed_at, time.monotonic(), None, f"not sent: {problem!r}", 0.0))
            return
        for hook in hooks:
            self._post(hook, pending, body)

    def _keep(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.append(delivery)

    def _post(self, hook: Hook, pending: _Pending, body: bytes) -> None:
        guid = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/sandbox",
            "X-GitHub-Event": pending.event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": str(hook.id),
            "X-Hub-Signature": "sha1=" + hmac.new(hook.secret.encode(), body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest(),
        }
        sent = time.monotonic()
        try:
            response = self._session.post(hook.url, data=body, headers=headers, timeout=TIMEOUT_SECONDS)
            status, answer = response.status_code, response.text.strip()[:200]
        except requests.RequestException as problem:
            status, answer = None, type(problem).__name__
        self._keep(Delivery(guid, hook.id, pending.event, pending.action, pending.repo, pending.changed_at, sent,
                            status, answer, round(time.monotonic() - sent, 4)))
