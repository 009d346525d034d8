"""One issue, start to finish: claim, labels, workspace, the team's workflow, pull request, release.

Order matters for exactly-once: every label that ends a run is set while the claim is still
held, so an issue labelled `in-progress` with no claim can only be an orphan of a dead run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from asm.deps import Deps
from asm.errors import (AlreadyClaimed, AsmError, BudgetExceeded, ClaimLost, CreditExhausted,
                        ModelUnavailable, TimeLimitReached, TurnLimitReached)
from asm.github import AI_FAILED, IN_PROGRESS, IN_REVIEW, NEEDS_CLARIFICATION, IssueInfo, PullInfo, RepoInfo
from asm.keys import PAUSED, IssueRef, approved_key, attempts_key
from asm.ledger import Caps, IssueMeter
from asm.locks import Claim
from asm.queue import forget
from asm.report import RunFacts, comment, pull_body, redact
from asm.status import WorkerStatus, paused_reason
from asm.model import MAX_TOKENS
from asm.roles import TEAM
from asm.team import Team
from asm.tools import Workspace
from asm.workflow import Outcome, Step, run_workflow
from asm.workspace import Checkout, Pending

log = logging.getLogger(__name__)

APPROVED_TTL = 7 * 24 * 3600
# Runs that die without an ending (killed, hard time limit) are re-queued by the scan; this many in a
# row means something kills every attempt, and a person must look.
MAX_ATTEMPTS = 3
FINAL_LABELS = (IN_REVIEW, NEEDS_CLARIFICATION, AI_FAILED)


@dataclass(frozen=True)
class Progress:
    """Where a run is, for Flower and `asm status`."""

    issue: str
    stage: str
    revision: int
    spent_usd: float
    new_stage: bool = True  # False: the same stage, only the spend moved


@dataclass(frozen=True)
class Result:
    """How a delivery of `asm.process_issue` ended, in one line, and whether to queue it again later."""

    summary: str
    outcome: str  # in-review, needs-clarification, ai-failed, given-back, skipped, paused, capped, claim-lost
    completed: bool = False
    requeue_after: float | None = None


Report = Callable[[Progress], None]


def process_issue(deps: Deps, status: WorkerStatus, issue: IssueRef, report: Report = lambda _: None,
                  time_up: tuple[type[BaseException], ...] = ()) -> Result:
    """Work the issue if this delivery wins its claim; otherwise leave it alone."""
    result = _deliver(deps, status, issue, report, time_up)
    deps.metrics.count("asm_issues_total", outcome=result.outcome)
    log.info("%s [%s] %s", issue, status.worker, result.summary)
    return result


def _deliver(deps: Deps, status: WorkerStatus, issue: IssueRef, report: Report,
             time_up: tuple[type[BaseException], ...]) -> Result:
    forget(deps.redis, issue)
    reason = paused_reason(deps.redis)
    if reason:
        return Result(f"{issue}: not started, the fleet is paused ({reason})", "paused")
    try:
        with Claim(deps.redis, issue, deps.settings.claim_ttl, status.worker) as claim:
            return IssueRun(deps, status, issue, claim, report, time_up).run()
    except AlreadyClaimed as busy:
        deps.metrics.count("asm_claim_conflicts_total")
        return Result(f"{issue}: skipped, {busy}", "skipped")
    except ClaimLost as lost:
        return Result(f"{issue}: stopped, {lost}; the new holder carries on", "claim-lost")


class IssueRun:
    """One attempt at one issue, under its claim."""

    def __init__(self, deps: Deps, status: WorkerStatus, issue: IssueRef, claim: Claim, report: Report,
                 time_up: tuple[type[BaseException], ...]) -> None:
        self.deps = deps
        self.github = deps.github
        self.status = status
        self.issue = issue
        self.claim = claim
        self.report = report
        self.time_up = time_up
        self.started = time.monotonic()
        self.revision = 0
        self.stage = "claimed"
        self.stage_started = self.started
        self.stage_seconds: dict[str, float] = {}
        self.crew: Team | None = None
        self.caps = Caps.from_settings(deps.settings, roles=len(TEAM))
        self.spent = 0.0
        self.labels: frozenset[str] = frozenset()
        self.issue_title = ""

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> Result:
        info = self.github.issue(self.issue)
        self.labels = info.labels
        self.issue_title = info.title
        skip = self.why_skip(info)
        if skip:
            return Result(f"{self.issue}: skipped, {skip}", "skipped")
        capped = self.deps.ledger.day_cap_reached(self.issue.repo, self.caps,
                                                  self.deps.ledger.worst_case(0, MAX_TOKENS))
        if capped:
            # Nothing is spent and nothing fails: the issue waits, ready, for the next UTC day.
            if IN_PROGRESS in info.labels:
                self.set_label(self.deps.settings.ready_label)
            return Result(f"{self.issue}: not started, {capped}", "capped")
        self.github.ensure_labels(self.issue.repo)
        if IN_PROGRESS in info.labels:  # an earlier attempt died; it may have opened the PR already
            existing = self.github.find_pull(self.issue)
            if existing is not None:
                return self.in_review(existing)
        self.status.working(self.issue)
        result = Result(f"{self.issue}: stopped", "stopped")
        try:
            result = self.work(info)
            return result
        finally:
            self.close_stage()
            self.deps.metrics.observe_stages(self.stage_seconds)
            timings = {**self.stage_seconds, "tools": self.crew.tool_seconds if self.crew else 0.0}
            self.status.finished(self.issue, result.summary, result.completed, self.elapsed(),
                                 self.deps.ledger.spend(self.issue).usd, timings)

    def why_skip(self, info: IssueInfo) -> str | None:
        ready = self.deps.settings.ready_label
        if info.is_pull:
            return "it is a pull request"
        if info.state != "open":
            return "it is closed"
        if ready not in info.labels and IN_PROGRESS not in info.labels:
            done = sorted(info.labels & set(FINAL_LABELS))
            return f"already {done[0]}" if done else f"not labelled {ready}"
        return None

    def work(self, info: IssueInfo) -> Result:
        repo = self.github.repo(self.issue.repo)
        resumed = IN_PROGRESS in info.labels
        self.set_label(IN_PROGRESS)
        attempt = self.deps.redis.incr(attempts_key(self.issue))
        self.deps.redis.expire(attempts_key(self.issue), APPROVED_TTL)
        if attempt > MAX_ATTEMPTS:
            return self.fail(f"gave up after {MAX_ATTEMPTS} attempts that stopped without finishing.",
                             "Each one was interrupted (a worker killed, or the hard time limit). Label the issue "
                             f"`{self.deps.settings.ready_label}` to try again once the cause is fixed.")
        pull = self.saved_pull(repo)
        if pull is not None:
            return self.in_review(pull)
        self.spent = self.deps.ledger.spend(self.issue).usd  # earlier attempts count too
        self.say(("resumed the interrupted run" if resumed else "picked up this issue")
                 + ": Architect → Security → Tester → Product Owner.")
        pending = self.deps.workspaces.start(self.status.worker, self.issue, repo.clone_url, repo.default_branch)
        try:
            self.crew = self.team(info, pending)
            outcome = run_workflow(self.crew.perform, self.deps.settings.max_revisions, self.on_step)
            return self.conclude(outcome, pending.wait(), repo)
        except BudgetExceeded as stop:
            return self.fail("stopped at a spend cap; nothing was pushed.",
                             f"{stop}.\n\nRaise the cap, then label the issue `{self.deps.settings.ready_label}` "
                             "again to retry (the spend so far stays counted).")
        except TurnLimitReached as stop:
            return self.fail("gave up: a role ran out of turns.", f"{stop} (ASM_MAX_TURNS).")
        except ModelUnavailable as busy:
            return self.give_back(f"the model API is unavailable right now ({busy}); will retry later.",
                                  requeue_after=self.deps.settings.retry_backoff_seconds * 8)
        except CreditExhausted as broke:
            self.deps.redis.set(PAUSED, str(broke))
            log.error("fleet paused: %s", broke)
            return self.give_back(None, requeue_after=None, note=f"fleet paused: {broke}")
        except ClaimLost:
            raise
        except (TimeLimitReached, *self.time_up):
            return self.fail("stopped: the run reached its time limit (ASM_TASK_TIME_LIMIT); nothing was pushed.",
                             f"It ran for {self.elapsed():.0f}s. Label the issue `{self.deps.settings.ready_label}` "
                             "to try again.")
        except AsmError as problem:
            return self.fail("could not finish this issue.", str(problem))
        except Exception as bug:  # the task boundary: the issue must end labelled, whatever broke
            log.exception("%s: unexpected error", self.issue)
            return self.fail("failed because of an internal error.",
                             f"`{type(bug).__name__}` inside asm; the worker's log has the details.")
        finally:
            self.deps.workspaces.remove(pending)

    def team(self, info: IssueInfo, pending: Pending) -> Team:
        settings = self.deps.settings
        meter = IssueMeter(self.deps.ledger, self.issue, self.status.worker, self.caps,
                           checks=(self.claim.check, self.check_time), on_charge=self.charged)
        context = {"repo": self.issue.repo, "root": str(pending.path), "branch": self.issue.branch,
                   "issue_key": self.issue.key, "title": info.title, "body": info.body or "(no description)"}
        transcripts = settings.workspace_dir / ".transcripts" / self.issue.workspace_name
        workspace = Workspace(pending.path, pending.home, ready=pending.wait)
        return Team(self.deps.model, meter, workspace, context, settings.max_turns, transcripts)

    def conclude(self, outcome: Outcome, checkout: Checkout, repo: RepoInfo) -> Result:
        self.revision = outcome.revisions
        if outcome.kind == "clarification":
            self.say("needs answers before this can be implemented.", outcome.detail)
            self.set_label(NEEDS_CLARIFICATION)
            return Result(f"{self.issue}: questions asked, labelled {NEEDS_CLARIFICATION}", NEEDS_CLARIFICATION,
                          completed=True)
        if outcome.kind == "rejected":
            return self.fail("the Product Owner rejected the change; no pull request.", outcome.detail)
        if outcome.kind == "exhausted":
            return self.fail(f"no approval after {outcome.revisions} revisions (ASM_MAX_REVISIONS); "
                             "no pull request.", f"The Product Owner's last feedback:\n\n{outcome.detail}")
        self.step("push")
        self.claim.check()
        head = self.deps.workspaces.commit(checkout, f"{self.title()}\n\nCloses #{self.issue.number}")
        if head is None:
            return self.fail("the team approved, but made no change to the code; no pull request.", outcome.detail)
        files = self.deps.workspaces.changed_files(checkout)
        body = redact(pull_body(self.issue, outcome, self.facts(), files), self.deps.settings.secrets)
        # Saved before the push: a crash between push and pull request resumes from here, not from scratch.
        self.deps.redis.set(approved_key(self.issue), json.dumps({"sha": head, "body": body}), ex=APPROVED_TTL)
        self.deps.workspaces.push(checkout, repo.clone_url)
        self.claim.check()
        pull = self.github.open_pull(self.issue, self.title(), body, repo.default_branch)
        return self.in_review(pull)

    # -- endings ------------------------------------------------------------------------------

    # Each ending comments first and labels last: the label is what says the run is over, so an
    # interruption in between leaves an orphan that is re-run, never an end label with no reason.

    def in_review(self, pull: PullInfo) -> Result:
        merged = ""
        if self.deps.settings.auto_merge and self.github.merge(self.issue, pull.number):
            merged = " and merged it (ASM_AUTO_MERGE)"
        self.say(f"opened {pull.html_url}{merged}.")
        self.set_label(IN_REVIEW)
        self.deps.redis.delete(approved_key(self.issue))
        return Result(f"{self.issue}: {pull.html_url}", IN_REVIEW, completed=True)

    def fail(self, headline: str, details: str) -> Result:
        self.say(headline, details)
        self.set_label(AI_FAILED)
        return Result(f"{self.issue}: ai-failed, {headline}", AI_FAILED)

    def give_back(self, message: str | None, requeue_after: float | None, note: str = "") -> Result:
        """Put the issue back as it was before the claim, to be picked up again later."""
        if message:
            self.say(message)
        self.set_label(self.deps.settings.ready_label)
        return Result(f"{self.issue}: given back, {note or message}", "given-back", requeue_after=requeue_after)

    # -- helpers ------------------------------------------------------------------------------

    def saved_pull(self, repo: RepoInfo) -> PullInfo | None:
        """Open the pull request an interrupted attempt approved and pushed, if the branch still holds it."""
        raw = self.deps.redis.get(approved_key(self.issue))
        if raw is None:
            return None
        saved = json.loads(raw)
        if self.deps.workspaces.remote_branch_sha(repo.clone_url, self.issue.branch) != saved["sha"]:
            return None
        return self.github.open_pull(self.issue, self.title(), saved["body"], repo.default_branch)

    def title(self) -> str:
        return f"[AI] {self.issue_title}"

    def set_label(self, label: str) -> None:
        """Make `label` the issue's one asm label (the ready label counts as one)."""
        self.claim.check()
        owned = {IN_PROGRESS, *FINAL_LABELS, self.deps.settings.ready_label}
        self.github.move_labels(self.issue, label, owned - {label}, self.labels)
        self.labels = (self.labels - owned) | {label}
        if label != IN_PROGRESS:  # the run reached an ending (or gave the issue back)
            self.deps.redis.delete(attempts_key(self.issue))

    def note(self, message: str) -> None:
        """One log line for one step: issue, worker, stage, what happened (secrets are redacted by the handler)."""
        log.info("%s [%s] %s: %s", self.issue, self.status.worker, self.stage, message)

    def say(self, headline: str, details: str = "") -> None:
        self.note(headline)
        self.claim.check()
        text = comment(headline, self.facts(), details)
        self.github.comment(self.issue, redact(text, self.deps.settings.secrets))

    def facts(self) -> RunFacts:
        return RunFacts(self.deps.ledger.spend(self.issue), self.revision, self.elapsed(), self.status.worker)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_time(self) -> None:
        """Our own deadline, checked before every model call: Celery's soft limit arrives as an exception
        anywhere, and HTTP clients swallow it; this one is raised where the run can stop cleanly."""
        if self.elapsed() >= self.deps.settings.task_time_limit:
            raise TimeLimitReached(f"ran {self.elapsed():.0f}s, the limit is {self.deps.settings.task_time_limit:g}s")

    def on_step(self, step: Step) -> None:
        self.revision = step.revision
        self.step(step.role.name)

    def close_stage(self) -> None:
        """Add the time since the stage began to its total (stages repeat across revisions)."""
        now = time.monotonic()
        self.stage_seconds[self.stage] = self.stage_seconds.get(self.stage, 0.0) + now - self.stage_started
        self.stage_started = now

    def charged(self, issue_total_usd: float) -> None:
        self.spent = issue_total_usd
        self.step(None)

    def step(self, stage: str | None) -> None:
        """Tell the status table and Flower where the run is (stage None: same stage, new spend)."""
        if stage is not None:
            self.close_stage()
            self.stage = stage
            self.status.stage(self.issue, self.stage, self.revision)
            self.note(f"revision {self.revision}, ${self.spent:.4f} spent so far")
        self.report(Progress(self.issue.key, self.stage, self.revision, self.spent, stage is not None))
