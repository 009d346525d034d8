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

from asm.agents.roles import TEAM
from asm.agents.team import IssueText, Team
from asm.agents.tools import WorkingTree
from asm.agents.workflow import Outcome, run_workflow
from asm.deps import Deps
from asm.errors import AlreadyClaimed, AsmError, ClaimLost, FleetPaused, ModelUnavailable, TimeLimitReached, Untrusted
from asm.fleet.claim import Claim
from asm.fleet.hold import fleet_hold, model_answered, pause_fleet, rest_model
from asm.fleet.queue import mark_delivered
from asm.github import IN_PROGRESS, IssueInfo, PullInfo, RepoInfo
from asm.guard.jail import SHOWN_ROOT
from asm.guard.redaction import redact
from asm.guard.sanitize import sanitize, strip_invisible
from asm.guard.trust import Vouched
from asm.keys import IssueRef, approved_key, attempts_key, told_key, vouched_key
from asm.observe.progress import OnProgress, ProgressTracker
from asm.observe.status import WorkerStatus
from asm.run import endings
from asm.run.board import FINAL_LABELS, Board
from asm.run.endings import DeliveryResult, Ending
from asm.run.gate import UNTRUSTED_TOLD_SECONDS, vouched_text
from asm.run.meter import IssueMeter, issue_caps
from asm.run.texts import RunFacts, pull_body
from asm.spend.cost import MAX_OUTPUT_TOKENS
from asm.workspace import Checkout, Pending

log = logging.getLogger(__name__)

APPROVED_TTL = 7 * 24 * 3600
# Runs that die without an ending (killed, hard time limit) are re-queued by the scan; this many in a
# row means something kills every attempt, and a person must look.
MAX_ATTEMPTS = 3
# The model's outage is said on an issue once an hour, however many times it sends the issue back.
TOLD_SECONDS = 3600


def process_issue(deps: Deps, status: WorkerStatus, issue: IssueRef, on_progress: OnProgress = lambda _: None,
                  time_up: tuple[type[BaseException], ...] = ()) -> DeliveryResult:
    """Work the issue if this delivery wins its claim; otherwise leave it alone."""
    result = _deliver(deps, status, issue, on_progress, time_up)
    deps.metrics.count("asm_issues_total", outcome=result.outcome)
    log.info("%s [%s] %s", issue, status.worker, result.summary)
    return result


def _deliver(deps: Deps, status: WorkerStatus, issue: IssueRef, on_progress: OnProgress,
             time_up: tuple[type[BaseException], ...]) -> DeliveryResult:
    mark_delivered(deps.redis, issue)
    if issue.repo.lower() not in {repo.lower() for repo in deps.settings.repos}:
        # Tasks come through Redis: a forged or stale one must not point asm at another repository.
        return DeliveryResult(f"{issue}: refused, {issue.repo} is not in ASM_REPOS", "refused")
    hold = fleet_hold(deps.redis)
    if hold is not None and hold.paused:
        return DeliveryResult(f"{issue}: not started, {hold.reason}", "paused")
    if hold is not None:
        return DeliveryResult(f"{issue}: not started, {hold.reason}", "deferred",
                              requeue_after=hold.resting_seconds + 1)
    try:
        with Claim(deps.redis, issue, deps.settings.claim_ttl, status.worker) as claim:
            info = deps.github.issue(issue)  # read once it is ours: no other run changes it now
            return IssueRun(deps, status, issue, claim, info, on_progress, time_up).run()
    except AlreadyClaimed as busy:
        deps.metrics.count("asm_claim_conflicts_total")
        return DeliveryResult(f"{issue}: skipped, {busy}", "skipped")
    except ClaimLost as lost:
        return DeliveryResult(f"{issue}: stopped, {lost}; the new holder carries on", "claim-lost")


class IssueRun:
    """One attempt at one issue, under its claim."""

    def __init__(self, deps: Deps, status: WorkerStatus, issue: IssueRef, claim: Claim, info: IssueInfo,
                 on_progress: OnProgress, time_up: tuple[type[BaseException], ...]) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.github = deps.github
        self.status = status
        self.issue = issue
        self.claim = claim
        self.info = info
        self.time_up = time_up
        self.started = time.monotonic()
        self.caps = issue_caps(deps.settings, roles=len(TEAM))
        self.issue_title = info.title  # until the vouched-for title replaces it
        self.tracker = ProgressTracker(issue, status, on_progress)
        self.board = Board(deps.github, claim, issue, deps.settings.ready_label, info.labels,
                           deps.settings.secrets, self.facts, self.tracker.note)
        self.team: Team | None = None  # once the workspace is started
        self.pushed = False

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> DeliveryResult:
        skip = self.why_skip()
        if skip:
            return DeliveryResult(f"{self.issue}: skipped, {skip}", "skipped")
        try:
            vouched = vouched_text(self.deps, self.issue)
        except Untrusted as refusal:
            return self.refuse(str(refusal))
        # GitHub shows a title as plain text: only what is invisible goes (the body is Markdown, sanitised whole).
        self.issue_title = strip_invisible(vouched.title)
        resumed = IN_PROGRESS in self.info.labels  # an earlier attempt died; it may have opened the PR already
        capped = self.deps.ledger.day_cap_reached(self.issue.repo, self.caps,
                                                  self.deps.ledger.worst_case(0, MAX_OUTPUT_TOKENS))
        if capped:
            # Nothing is spent and nothing fails: the issue waits, ready, for the next UTC day.
            if resumed:
                self.board.set_label(self.settings.ready_label)
            return DeliveryResult(f"{self.issue}: not started, {capped}", "capped")
        self.github.ensure_labels(self.issue.repo)
        existing = self.github.find_pull(self.issue) if resumed else None
        if existing is not None:
            return self.in_review(existing)
        self.status.working(self.issue)
        result = DeliveryResult(f"{self.issue}: stopped", "stopped")
        try:
            result = self.work(vouched, resumed)
            return result
        finally:
            stage_seconds = self.tracker.close_stage()
            self.deps.metrics.observe_stages(stage_seconds)
            timings = {**stage_seconds, "tools": self.team.tool_seconds if self.team else 0.0}
            self.status.finished(self.issue, result.summary, result.completed, self.elapsed(),
                                 self.deps.ledger.spend(self.issue).usd, timings)

    def why_skip(self) -> str | None:
        labels = self.info.labels
        if self.info.is_pull:
            return "it is a pull request"
        if self.info.state != "open":
            return "it is closed"
        done = sorted(labels & set(FINAL_LABELS))
        if done and self.settings.ready_label not in labels:
            if IN_PROGRESS in labels:  # an ending whose last label change was cut short
                self.board.drop_label(IN_PROGRESS)
            return f"already {done[0]}"
        if not {self.settings.ready_label, IN_PROGRESS} & labels:
            return f"not labelled {self.settings.ready_label}"
        return None

    def refuse(self, reason: str) -> DeliveryResult:
        """Not asked for by anyone asm may act for: say why (once a day), take the label off, start nothing."""
        if self.deps.redis.set(told_key(self.issue, "untrusted"), 1, nx=True, ex=UNTRUSTED_TOLD_SECONDS):
            self.board.say("did not start on this issue.", reason)
        for label in (self.settings.ready_label, IN_PROGRESS):
            if label in self.board.labels:
                self.board.drop_label(label)
        return DeliveryResult(f"{self.issue}: not started, not asked for by a user with "
                              f"{self.settings.trusted_permission} permission", "untrusted")

    def work(self, vouched: Vouched, resumed: bool) -> DeliveryResult:
        repo = self.github.repo(self.issue.repo)
        self.board.set_label(IN_PROGRESS)
        pull = self.saved_pull(repo)
        if pull is not None:  # approved and pushed before an interruption: only the PR was missing
            return self.in_review(pull)
        attempt = self.deps.redis.incr(attempts_key(self.issue))
        self.deps.redis.expire(attempts_key(self.issue), APPROVED_TTL)
        if attempt > MAX_ATTEMPTS:
            return self.end(endings.TOO_MANY_ATTEMPTS, attempts=MAX_ATTEMPTS)
        self.tracker.spent_usd = self.deps.ledger.spend(self.issue).usd  # earlier attempts count too
        left_out = f"; edits since by {', '.join(vouched.left_out)} were not used" if vouched.left_out else ""
        # In code quotes: naming who asked must not notify them on every run.
        self.board.say(("resumed the interrupted run" if resumed else "picked up this issue")
                       + f" as asked by `{vouched.by}`{left_out}: Architect → Security → Tester → Product Owner.")
        pending = self.deps.workspaces.start(self.status.worker, self.issue, repo.clone_url, repo.default_branch)
        try:
            self.team = self.build_team(vouched, pending)
            outcome = run_workflow(self.team.perform, self.settings.max_revisions, self.tracker.on_step)
            ending = self.conclude(outcome, pending.wait(), repo)
        except ModelUnavailable as busy:
            return self.rest_model(busy)
        except FleetPaused as stop:
            pause_fleet(self.deps.redis, str(stop))
            log.error("fleet paused: %s", stop)
            return self.end(endings.FLEET_PAUSED, error=stop)
        except ClaimLost:
            raise
        except (TimeLimitReached,) + self.time_up:  # the same tuple; mypy cannot read a starred one here
            pushed = "the branch was pushed, no pull request opened" if self.pushed else "nothing was pushed"
            return self.end(endings.TIME_LIMIT, pushed=pushed, seconds=self.elapsed())
        except Exception as error:  # the task boundary: the issue must end labelled, whatever broke
            if not isinstance(error, AsmError):
                log.exception("%s: unexpected error", self.issue)
            return self.end(endings.ending_for(error), error=error, kind=type(error).__name__)
        finally:
            self.deps.workspaces.remove(pending)
        # Outside the handlers above: once the PR is open, a failure to label must not turn into
        # `ai-failed` next to an open PR. It escapes, the issue stays in-progress, and the next run
        # finds the PR and finishes the labels.
        return self.in_review(ending) if isinstance(ending, PullInfo) else ending

    def build_team(self, vouched: Vouched, pending: Pending) -> Team:
        model_answers = lambda _: model_answered(self.deps.redis)  # noqa: E731 (a billed reply ends an outage)
        meter = IssueMeter(self.deps.ledger, self.deps.metrics, self.issue, self.status.worker, self.caps,
                           checks=(self.claim.check, self.check_time),
                           on_charge=(self.tracker.charged, model_answers))
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

    def conclude(self, outcome: Outcome, checkout: Checkout, repo: RepoInfo) -> DeliveryResult | PullInfo:
        """An ending for every outcome but approval; for approval, the pull request it opened."""
        if outcome.kind in endings.VERDICT_ENDINGS:
            return self.end(endings.VERDICT_ENDINGS[outcome.kind], detail=outcome.detail, revisions=outcome.revisions)
        self.tracker.enter("push")
        self.claim.check()
        head = self.deps.workspaces.commit(checkout, f"{self.title()}\n\nCloses #{self.issue.number}")
        if head is None:
            return self.end(endings.NO_CHANGE, detail=outcome.detail)
        files = self.deps.workspaces.changed_files(checkout)
        body = redact(pull_body(self.issue, outcome, self.facts(), files), self.settings.secrets)
        # Saved before the push: a crash between push and pull request resumes from here, not from scratch.
        self.deps.redis.set(approved_key(self.issue), json.dumps({"sha": head, "body": body}), ex=APPROVED_TTL)
        self.deps.workspaces.push(checkout, repo.clone_url)
        self.pushed = True
        self.claim.check()
        return self.github.open_pull(self.issue, self.title(), body, repo.default_branch)

    # -- endings ------------------------------------------------------------------------------

    def end(self, ending: Ending, say: bool = True, requeue_after: float | None = None,
            **facts: object) -> DeliveryResult:
        """Say why (unless told not to), set the label that ends the run, forget the run's bookkeeping."""
        words = {"ready": self.settings.ready_label, **facts}
        if say and ending.headline:
            self.board.say(ending.headline.format(**words), ending.details.format(**words))
        self.board.set_label(ending.label or self.settings.ready_label)
        self.deps.redis.delete(attempts_key(self.issue), approved_key(self.issue))
        if ending.label is not None:  # the operator's word was for this request, now answered
            self.deps.redis.delete(vouched_key(self.issue))
        return DeliveryResult(f"{self.issue}: {ending.summary_line(words)}", ending.outcome,
                              completed=ending.completed, requeue_after=requeue_after if ending.requeue else None)

    def in_review(self, pull: PullInfo) -> DeliveryResult:
        merged = ""
        if self.settings.auto_merge and self.github.merge(self.issue, pull.number):
            merged = " and merged it (ASM_AUTO_MERGE)"
        return self.end(endings.PULL_OPENED, url=pull.html_url, merged=merged)

    def rest_model(self, busy: ModelUnavailable) -> DeliveryResult:
        """The model API failed every retry: the fleet rests it, and the issue goes back to wait for it."""
        rest = rest_model(self.deps.redis, str(busy), self.settings.retry_backoff_seconds)
        told = self.deps.redis.set(told_key(self.issue, "model-unavailable"), 1, nx=True, ex=TOLD_SECONDS)
        return self.end(endings.MODEL_UNAVAILABLE, say=bool(told), requeue_after=rest + 1, error=busy, rest=rest)

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
        return RunFacts(self.deps.ledger.spend(self.issue), self.tracker.revision, self.elapsed(), self.status.worker)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_time(self) -> None:
        """Our own deadline, checked before every model call and retry: Celery's soft limit arrives as an
        exception anywhere, and HTTP clients swallow it; this one is raised where the run can stop cleanly."""
        if self.elapsed() >= self.settings.task_time_limit:
            raise TimeLimitReached(f"ran {self.elapsed():.0f}s, the limit is {self.settings.task_time_limit:g}s")
