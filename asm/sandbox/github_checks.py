"""Check runs and commit statuses: the part of `GitHubState` that says what CI made of a commit.

A base class of `GitHubState`, sharing its lock, clock, people and id sequence. Both kinds hang
off a commit sha; the newest check run of a name (per app) and the newest status of a context are
the ones that count, as on GitHub, where the combined status and the GraphQL rollup read them.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from asm.sandbox import github_git as git
from asm.sandbox.github_clock import Clock
from asm.sandbox.github_people import HUMAN_LOGIN, People
from asm.sandbox.github_records import (
    ApiError,
    CheckRun,
    CommitStatus,
    Repo,
    invalid_request,
    not_found,
    validation_failed,
)

if TYPE_CHECKING:
    from asm.sandbox.github_hooks import Hooks
    from asm.sandbox.github_state import _RepoData

ACTIONS_APP = "github-actions"  # the app whose check runs are GitHub Actions jobs, with logs
CHECK_STATUSES = ("queued", "in_progress", "completed")
CONCLUSIONS = ("success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required")
STATUS_STATES = ("error", "failure", "pending", "success")
# Conclusions that fail a commit's rollup; neutral and skipped count as passing, as on GitHub.
_FAILING = {"failure", "timed_out", "cancelled", "action_required", "startup_failure"}
_Item = TypeVar("_Item", CheckRun, CommitStatus)
_EDITABLE = {"name", "status", "conclusion", "title", "summary", "text", "log", "details_url", "started_at",
             "completed_at", "external_id"}


class ChecksAndStatuses:
    """Check runs and commit statuses on the commits of a `GitHubState`'s repositories."""

    if TYPE_CHECKING:  # provided by GitHubState, which this class is a base of
        _lock: threading.RLock
        _people: People
        _log_key: bytes
        clock: Clock
        hooks: Hooks | None

        def _new_id(self) -> int: ...
        def _data(self, full_name: str) -> _RepoData: ...
        def repo(self, full_name: str) -> Repo: ...

    # -- check runs -----------------------------------------------------------------------------

    def create_check_run(
        self,
        full_name: str,
        head_sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = None,
        title: str = "",
        summary: str = "",
        text: str = "",
        log: str = "",
        app: str = ACTIONS_APP,
        *,
        details_url: str | None = None,
        external_id: str = "",
        started_at: str | None = None,
        completed_at: str | None = None,
    ) -> int:
        """A check run of `app` on the commit `head_sha` (or a branch's tip); its id.

        As on GitHub, a conclusion completes the run, and a completed run needs one. `log` is
        what the job's log URL serves when `app` is GitHub Actions.
        """
        if not name:
            raise invalid_request("name")
        with self._lock:
            sha = self.commit_sha(full_name, head_sha)
            data = self._data(full_name)
            suite = data.check_suites.setdefault((sha, app), self._new_id())
            now = self.clock.iso()
            run = CheckRun(self._new_id(), sha, name, "queued", None, started_at or now, None, None, None, None, app,
                           suite, details_url, external_id, log)
            run = _changed(run, now, dict(status=status, conclusion=conclusion, title=title, summary=summary,
                                          text=text, completed_at=completed_at))
            data.check_runs[run.id] = run
            if self.hooks is not None:
                self.hooks.check_run_changed(full_name, None, run)
            return run.id

    def update_check_run(self, full_name: str, check_run_id: int, **fields: str | None) -> CheckRun:
        """PATCH semantics on a check run: name, status, conclusion, title, summary, text, log, details_url, ..."""
        unknown = set(fields) - _EDITABLE
        if unknown:
            raise ValueError(f"a check run has no {', '.join(sorted(unknown))}")
        with self._lock:
            before = self.check_run(full_name, check_run_id)
            run = _changed(before, self.clock.iso(), fields)
            self._data(full_name).check_runs[run.id] = run
            if self.hooks is not None:
                self.hooks.check_run_changed(full_name, before, run)
            return run

    def check_run(self, full_name: str, check_run_id: int) -> CheckRun:
        with self._lock:
            run = self._data(full_name).check_runs.get(check_run_id)
            if run is None:
                raise not_found()
            return run

    def check_runs(self, full_name: str, sha: str) -> list[CheckRun]:
        """Every check run on the commit `sha` (in full; `commit_sha` resolves a branch), oldest first."""
        with self._lock:
            return sorted((r for r in self._data(full_name).check_runs.values() if r.head_sha == sha),
                          key=lambda r: r.id)

    def log_token(self, check_run_id: int) -> str:
        """What a job's log URL carries instead of a token: a signature of the job's id."""
        return hmac.new(self._log_key, str(check_run_id).encode(), hashlib.sha256).hexdigest()

    # -- commit statuses ------------------------------------------------------------------------

    def create_status(
        self,
        full_name: str,
        sha: str,
        context: str,
        state: str,
        description: str = "",
        target_url: str = "",
        creator: str = HUMAN_LOGIN,
    ) -> CommitStatus:
        """`creator` posts a status for `context` on the commit `sha` (or a branch's tip)."""
        if state not in STATUS_STATES:
            raise validation_failed("Status", "custom", "state", "state is not included in the list")
        with self._lock:
            creator = self._people.known(creator)
            status = CommitStatus(self._new_id(), self.commit_sha(full_name, sha), context or "default", state,
                                  description or None, target_url or None, creator, self.clock.iso())
            self._data(full_name).statuses.append(status)
            return status

    def statuses(self, full_name: str, sha: str) -> list[CommitStatus]:
        """Every status posted on the commit `sha` (in full), newest first (as GitHub lists them)."""
        with self._lock:
            return [s for s in reversed(self._data(full_name).statuses) if s.sha == sha]

    def combined_status(self, full_name: str, sha: str) -> tuple[str, list[CommitStatus]]:
        """GitHub's combined status of the commit and the newest status of each context behind it.

        failure when any context is error or failure, pending when any is pending or there is
        none, success otherwise.
        """
        latest = _newest(self.statuses(full_name, sha), lambda status: status.context)
        states = {s.state for s in latest}
        if states & {"error", "failure"}:
            return "failure", latest
        return ("pending" if not latest or "pending" in states else "success"), latest

    def rollup(self, full_name: str, sha: str) -> tuple[str, list[CheckRun | CommitStatus]] | None:
        """The commit's GraphQL `statusCheckRollup`: its StatusState and contexts; None without checks or statuses.

        The contexts are the newest check run of each name (per app), then the newest status of each
        context. FAILURE outranks ERROR, which outranks PENDING; SUCCESS needs every one to pass.
        """
        runs = _newest(self.check_runs(full_name, sha), lambda run: (run.app, run.name))
        statuses = _newest(self.statuses(full_name, sha), lambda status: status.context)
        if not runs and not statuses:
            return None
        states = {_run_state(run) for run in runs} | {status.state.upper() for status in statuses}
        state = next((s for s in ("FAILURE", "ERROR", "PENDING") if s in states), "SUCCESS")
        return state, [*runs, *statuses]

    # -- commits --------------------------------------------------------------------------------

    def commit_sha(self, full_name: str, ref: str) -> str:
        """The full sha of the commit `ref` (a sha, or a branch) names; GitHub's 422 when none."""
        sha = git.resolve(self.repo(full_name).path, ref)
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {ref}")
        return sha


def _changed(run: CheckRun, now: str, fields: dict[str, str | None]) -> CheckRun:
    """`run` with `fields` applied as GitHub applies them: a conclusion completes the run."""
    status = fields.get("status") or run.status
    conclusion = fields["conclusion"] if "conclusion" in fields else run.conclusion if status == "completed" else None
    if status not in CHECK_STATUSES:
        raise invalid_request(reason=f"For 'properties/status', \"{status}\" is not one of {list(CHECK_STATUSES)}.")
    if conclusion is not None and conclusion not in CONCLUSIONS:
        raise invalid_request(reason=f"For 'properties/conclusion', \"{conclusion}\" is not one of "
                                     f"{list(CONCLUSIONS)}.")
    if conclusion is not None:
        status = "completed"
    if status == "completed" and conclusion is None:
        raise invalid_request("conclusion")
    completed_at = (fields.get("completed_at") or run.completed_at or now) if status == "completed" else None
    changes: dict[str, Any] = {key: fields[key] or None for key in ("title", "summary", "text") if key in fields}
    changes.update((key, value) for key, value in fields.items()
                   if key in ("name", "log", "details_url", "started_at", "external_id") and value is not None)
    return replace(run, **changes, status=status, conclusion=conclusion, completed_at=completed_at)


def _run_state(run: CheckRun) -> str:
    if run.status != "completed":
        return "PENDING"
    return "FAILURE" if run.conclusion in _FAILING else "SUCCESS"


def _newest(items: Iterable[_Item], key: Callable[[_Item], object]) -> list[_Item]:
    """The newest item of each `key`, oldest first."""
    latest: dict[object, _Item] = {}
    for item in sorted(items, key=lambda item: item.id):
        latest[key(item)] = item
    return sorted(latest.values(), key=lambda item: item.id)
