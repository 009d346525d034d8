"""One issue, start to finish: claim, labels, workspace, the team's workflow, pull request, release.

Order matters for exactly-once: every label that ends a run is set while the claim is still
held, so an issue labelled `in-progress` with no claim can only be an orphan of a dead run.
Each ending comments first and labels last: the label says the run is over, so an interruption
in between leaves an orphan that is re-run, never an end label without its reason.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from asm.agents.roles import TEAM
from asm.agents.team import IssueText, Team
from asm.agents.tools import WorkingTree
from asm.agents.workflow import Outcome, run_workflow
from asm.deps import Deps
from asm.errors import (
    AlreadyClaimed,
    AsmError,
    BudgetExceeded,
    ClaimLost,
    FleetPaused,
    ModelUnavailable,
    SecretInChange,
    TimeLimitReached,
    TurnLimitReached,
    Untrusted,
)
from asm.fleet.claim import Claim
from asm.fleet.queue import forget
from asm.github import (
    AI_FAILED,
    IN_PROGRESS,
    IN_REVIEW,
    NEEDS_CLARIFICATION,
    IssueInfo,
    PullInfo,
    RepoInfo,
)
from asm.guard.jail import SHOWN_ROOT
from asm.guard.redaction import redact
from asm.guard.sanitize import sanitize, strip_invisible
from asm.guard.trust import OperatorVouch, Vouched, vouch
from asm.keys import (
    MODEL_OUTAGES,
    MODEL_RESTING,
    PAUSED,
    IssueRef,
    approved_key,
    attempts_key,
    told_key,
    vouched_key,
)
from asm.observe.progress import Report, Tracker
from asm.observe.status import WorkerStatus, paused_reason
from asm.run.board import FINAL_LABELS, Board
from asm.run.texts import RunFacts, pull_body
from asm.spend.cost import MAX_OUTPUT_TOKENS
from asm.spend.ledger import Caps, IssueMeter
from asm.workspace import Checkout, Pending

log = logging.getLogger(__name__)

APPROVED_TTL = 7 * 24 * 3600
# Runs that die without an ending (killed, hard time limit) are re-queued by the scan; this many in a
# row means something kills every attempt, and a person must look.
MAX_ATTEMPTS = 3
# After the model API failed every retry, the whole fleet waits before trying it again: this long
# at first, doubling with each outage in a row, up to MODEL_REST_MAX_SECONDS.
MODEL_REST_MAX_SECONDS = 900.0
TOLD_SECONDS = 3600
# A refused issue is told why once a day, however often someone puts the label back.
UNTRUSTED_TOLD_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Result:
    """How a delivery of `asm.process_issue` ended, in one line, and whether to queue it again later."""

    summary: str
    outcome: str  # in-review, needs-clarification, ai-failed, given-back, skipped, paused, deferred, capped...
    completed: bool = False
    requeue_after: float | None = None


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
    if issue.repo.lower() not in {repo.lower() for repo in deps.settings.repos}:
        # Tasks come through Redis: a forged or stale one must not point asm at another repository.
        return Result(f"{issue}: refused, {issue.repo} is not in ASM_REPOS", "refused")
    reason = paused_reason(deps.redis)
    if reason:
        return Result(f"{issue}: not started, the fleet is paused ({reason})", "paused")
    resting = deps.redis.ttl(MODEL_RESTING)
    if resting > 0:
        return Result(f"{issue}: not started, the model API is resting for {resting}s after an outage",
                      "deferred", requeue_after=resting + 1)
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
        self.settings = deps.settings
        self.github = deps.github
        self.status = status
        self.issue = issue
        self.claim = claim
        self.report = report
        self.time_up = time_up
        self.started = time.monotonic()
        self.caps = Caps.from_settings(deps.settings, roles=len(TEAM))
        self.crew: Team | None = None
        self.pushed = False
        self.issue_title = ""
        self.board = Board(deps.github, claim, issue, deps.settings.ready_label, frozenset(),
                           deps.settings.secrets, self.facts, lambda: f"[{status.worker}] {self.progress.stage}")
        self.progress = Tracker(issue, status, report, self.board.note)

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> Result:
        info = self.github.issue(self.issue)
        self.board.labels = info.labels
        self.issue_title = info.title
        skip = self.why_skip(info)
        if skip:
            return Result(f"{self.issue}: skipped, {skip}", "skipped")
        try:
            vouched = self.vouched()
        except Untrusted as refusal:
            return self.refuse(str(refusal))
        # GitHub shows a title as plain text: only what is invisible goes (the body is Markdown, sanitised whole).
        self.issue_title = strip_invisible(vouched.title)
        capped = self.deps.ledger.day_cap_reached(self.issue.repo, self.caps,
                                                  self.deps.ledger.worst_case(0, MAX_OUTPUT_TOKENS))
        if capped:
            # Nothing is spent and nothing fails: the issue waits, ready, for the next UTC day.
            if IN_PROGRESS in info.labels:
                self.board.set_label(self.settings.ready_label)
            return Result(f"{self.issue}: not started, {capped}", "capped")
        self.github.ensure_labels(self.issue.repo)
        if IN_PROGRESS in info.labels:  # an earlier attempt died; it may have opened the PR already
            existing = self.github.find_pull(self.issue)
            if existing is not None:
                return self.in_review(existing)
        self.status.working(self.issue)
        result = Result(f"{self.issue}: stopped", "stopped")
        try:
            result = self.work(info, vouched)
            return result
        finally:
            stage_seconds = self.progress.close_stage()
            self.deps.metrics.observe_stages(stage_seconds)
            timings = {**stage_seconds, "tools": self.crew.tool_seconds if self.crew else 0.0}
            self.status.finished(self.issue, result.summary, result.completed, self.elapsed(),
                                 self.deps.ledger.spend(self.issue).usd, timings)

    def why_skip(self, info: IssueInfo) -> str | None:
        if info.is_pull:
            return "it is a pull request"
        if info.state != "open":
            return "it is closed"
        done = sorted(info.labels & set(FINAL_LABELS))
        if done and self.settings.ready_label not in info.labels:
            if IN_PROGRESS in info.labels:  # an ending whose last label change was cut short
                self.board.drop_label(IN_PROGRESS)
            return f"already {done[0]}"
        if not {self.settings.ready_label, IN_PROGRESS} & info.labels:
            return f"not labelled {self.settings.ready_label}"
        return None

    def vouched(self) -> Vouched:
        """The issue's text as someone trusted asked for it; Untrusted when nobody trusted did."""
        raw = self.deps.redis.get(vouched_key(self.issue))
        operator = OperatorVouch(**json.loads(raw)) if raw else None
        permissions: dict[str, str] = {}

        def permission_of(login: str) -> str:
            if login not in permissions:
                permissions[login] = self.github.permission(self.issue.repo, login)
            return permissions[login]

        return vouch(self.github.history(self.issue), self.settings.ready_label, self.github.whoami(),
                     permission_of, self.settings.trusted_permission, operator)

    def refuse(self, reason: str) -> Result:
        """Not asked for by anyone asm may act for: say why (once a day), take the label off, start nothing."""
        if self.deps.redis.set(told_key(self.issue, "untrusted"), 1, nx=True, ex=UNTRUSTED_TOLD_SECONDS):
            self.board.say("did not start on this issue.", reason)
        for label in (self.settings.ready_label, IN_PROGRESS):
            if label in self.board.labels:
                self.board.drop_label(label)
        return Result(f"{self.issue}: not started, not asked for by a user with "
                      f"{self.settings.trusted_permission} permission", "untrusted")

    def work(self, info: IssueInfo, vouched: Vouched) -> Result:
        repo = self.github.repo(self.issue.repo)
        resumed = IN_PROGRESS in info.labels
        self.board.set_label(IN_PROGRESS)
        pull = self.saved_pull(repo)
        if pull is not None:  # approved and pushed before an interruption: only the PR was missing
            return self.in_review(pull)
        attempt = self.deps.redis.incr(attempts_key(self.issue))
        self.deps.redis.expire(attempts_key(self.issue), APPROVED_TTL)
        if attempt > MAX_ATTEMPTS:
            return self.fail(f"gave up after {MAX_ATTEMPTS} attempts that stopped without finishing.",
                             "Each one was interrupted (a worker killed, or the hard time limit). Label the issue "
                             f"`{self.settings.ready_label}` to try again once the cause is fixed.")
        self.progress.spent = self.deps.ledger.spend(self.issue).usd  # earlier attempts count too
        left_out = f"; edits since by {', '.join(vouched.left_out)} were not used" if vouched.left_out else ""
        # In code quotes: naming who asked must not notify them on every run.
        self.board.say(("resumed the interrupted run" if resumed else "picked up this issue")
                       + f" as asked by `{vouched.by}`{left_out}: Architect → Security → Tester → Product Owner.")
        pending = self.deps.workspaces.start(self.status.worker, self.issue, repo.clone_url, repo.default_branch)
        try:
            self.crew = self.team(vouched, pending)
            outcome = run_workflow(self.crew.perform, self.settings.max_revisions, self.progress.on_step)
            ending = self.conclude(outcome, pending.wait(), repo)
        except BudgetExceeded as stop:
            return self.fail("stopped at a spend cap; nothing was pushed.",
                             f"{stop}.\n\nRaise the cap, then label the issue `{self.settings.ready_label}` "
                             "again to retry (the spend so far stays counted).")
        except TurnLimitReached as stop:
            return self.fail("gave up: a role ran out of turns.", f"{stop} (ASM_MAX_TURNS).")
        except SecretInChange as leak:
            return self.fail("stopped: the team's change holds a secret of asm's; nothing was pushed.", str(leak))
        except ModelUnavailable as busy:
            return self.rest_model(busy)
        except FleetPaused as stop:
            self.deps.redis.set(PAUSED, str(stop))
            log.error("fleet paused: %s", stop)
            return self.give_back(None, f"fleet paused: {stop}")
        except ClaimLost:
            raise
        except (TimeLimitReached, *self.time_up):
            pushed = "the branch was pushed, no pull request opened" if self.pushed else "nothing was pushed"
            return self.fail(f"stopped: the run reached its time limit (ASM_TASK_TIME_LIMIT); {pushed}.",
                             f"It ran for {self.elapsed():.0f}s. Label the issue `{self.settings.ready_label}` "
                             "to try again.")
        except AsmError as problem:
            return self.fail("could not finish this issue.", str(problem))
        except Exception as bug:  # the task boundary: the issue must end labelled, whatever broke
            log.exception("%s: unexpected error", self.issue)
            return self.fail("failed because of an internal error.",
                             f"`{type(bug).__name__}` inside asm; the worker's log has the details.")
        finally:
            self.deps.workspaces.remove(pending)
        # Outside the handlers above: once the PR is open, a failure to label must not turn into
        # `ai-failed` next to an open PR. It escapes, the issue stays in-progress, and the next run
        # finds the PR and finishes the labels.
        return self.in_review(ending) if isinstance(ending, PullInfo) else ending

    def team(self, vouched: Vouched, pending: Pending) -> Team:
        meter = IssueMeter(self.deps.ledger, self.issue, self.status.worker, self.caps,
                           checks=(self.claim.check, self.check_time), on_charge=self.progress.charged)
        jail = self.deps.jail
        tree = WorkingTree(pending.tree, SHOWN_ROOT if jail.confined else str(pending.tree), pending.scratch,
                           owner=jail.owner, ready=pending.wait)
        context = {"repo": self.issue.repo, "root": tree.shown_root, "branch": self.issue.branch,
                   "issue_key": self.issue.key}
        # What reaches the model: the vouched text, with everything GitHub would not show removed.
        issue = IssueText(self.issue.key, self.issue_title, sanitize(vouched.body))
        transcripts = self.settings.workspace_dir / ".transcripts" / self.issue.workspace_name
        return Team(self.deps.model, meter, tree, jail, issue, context, self.settings.max_turns, transcripts,
                    redact=lambda text: redact(text, self.settings.secrets))

    def conclude(self, outcome: Outcome, checkout: Checkout, repo: RepoInfo) -> Result | PullInfo:
        """An ending for every outcome but approval; for approval, the pull request it opened."""
        if outcome.kind == "clarification":
            self.board.say("needs answers before this can be implemented.", outcome.detail)
            return self.end(NEEDS_CLARIFICATION, f"questions asked, labelled {NEEDS_CLARIFICATION}")
        if outcome.kind == "rejected":
            return self.fail("the Product Owner rejected the change; no pull request.", outcome.detail)
        if outcome.kind == "exhausted":
            return self.fail(f"no approval after {outcome.revisions} revisions (ASM_MAX_REVISIONS); "
                             "no pull request.", f"The Product Owner's last feedback:\n\n{outcome.detail}")
        self.progress.enter("push")
        self.claim.check()
        head = self.deps.workspaces.commit(checkout, f"{self.title()}\n\nCloses #{self.issue.number}")
        if head is None:
            return self.fail("the team approved, but made no change to the code; no pull request.", outcome.detail)
        files = self.deps.workspaces.changed_files(checkout)
        body = redact(pull_body(self.issue, outcome, self.facts(), files), self.settings.secrets)
        # Saved before the push: a crash between push and pull request resumes from here, not from scratch.
        self.deps.redis.set(approved_key(self.issue), json.dumps({"sha": head, "body": body}), ex=APPROVED_TTL)
        self.deps.workspaces.push(checkout, repo.clone_url)
        self.pushed = True
        self.claim.check()
        return self.github.open_pull(self.issue, self.title(), body, repo.default_branch)

    # -- endings ------------------------------------------------------------------------------

    def end(self, label: str, summary: str, completed: bool = True,
            requeue_after: float | None = None) -> Result:
        """Set the label that ends the run and forget the run's bookkeeping."""
        self.board.set_label(label)
        self.deps.redis.delete(attempts_key(self.issue), approved_key(self.issue))
        if label != self.settings.ready_label:  # the operator's word was for this request, now answered
            self.deps.redis.delete(vouched_key(self.issue))
        outcome = "given-back" if label == self.settings.ready_label else label
        return Result(f"{self.issue}: {summary}", outcome, completed=completed, requeue_after=requeue_after)

    def in_review(self, pull: PullInfo) -> Result:
        merged = ""
        if self.settings.auto_merge and self.github.merge(self.issue, pull.number):
            merged = " and merged it (ASM_AUTO_MERGE)"
        self.board.say(f"opened {pull.html_url}{merged}.")
        return self.end(IN_REVIEW, pull.html_url)

    def fail(self, headline: str, details: str) -> Result:
        self.board.say(headline, details)
        return self.end(AI_FAILED, f"ai-failed, {headline}", completed=False)

    def give_back(self, message: str | None, summary: str, requeue_after: float | None = None) -> Result:
        """Put the issue back as it was before the claim, to be picked up again later."""
        if message:
            self.board.say(message)
        return self.end(self.settings.ready_label, f"given back, {summary}", completed=False,
                        requeue_after=requeue_after)

    def rest_model(self, busy: ModelUnavailable) -> Result:
        """The model API failed every retry: the fleet rests it, longer each outage in a row."""
        redis = self.deps.redis
        outages = redis.incr(MODEL_OUTAGES)
        redis.expire(MODEL_OUTAGES, int(MODEL_REST_MAX_SECONDS * 4))
        rest = min(self.settings.retry_backoff_seconds * 8 * 2 ** (outages - 1), MODEL_REST_MAX_SECONDS)
        redis.set(MODEL_RESTING, str(busy), ex=max(int(rest), 1))
        # Say it once an hour per issue, however many times the outage sends it back.
        told = redis.set(told_key(self.issue, "model-unavailable"), 1, nx=True, ex=TOLD_SECONDS)
        message = f"the model API is unavailable right now ({busy}); will retry later." if told else None
        return self.give_back(message, f"model unavailable, retry in {rest:.0f}s", requeue_after=rest + 1)

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

    def facts(self) -> RunFacts:
        return RunFacts(self.deps.ledger.spend(self.issue), self.progress.revision, self.elapsed(), self.status.worker)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_time(self) -> None:
        """Our own deadline, checked before every model call and retry: Celery's soft limit arrives as an
        exception anywhere, and HTTP clients swallow it; this one is raised where the run can stop cleanly."""
        if self.elapsed() >= self.settings.task_time_limit:
            raise TimeLimitReached(f"ran {self.elapsed():.0f}s, the limit is {self.settings.task_time_limit:g}s")
