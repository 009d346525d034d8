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
from asm.agents.team import IssueText, Quoted, Team
from asm.agents.workflow import Outcome, run_workflow
from asm.conversation.asks import answer_rounds, answered
from asm.conversation.markers import mark
from asm.conversation.people import trusted_people
from asm.conversation.quote import answers_text
from asm.conversation.threads import Remark
from asm.deps import Deps
from asm.errors import AsmError, BranchMoved, ClaimLost, FleetPaused, ModelUnavailable, TimeLimitReached, Untrusted
from asm.fleet import probe
from asm.fleet.claim import Claim
from asm.fleet.hold import pause_fleet, rest_model
from asm.github import IN_PROGRESS, NEEDS_CLARIFICATION, IssueInfo, PullInfo, RepoInfo
from asm.guard.redaction import redact
from asm.guard.sanitize import sanitize, strip_invisible
from asm.guard.trust import Vouched
from asm.keys import IssueRef, approved_key, attempts_key, told_key, vouched_key
from asm.observe.progress import OnProgress, ProgressTracker
from asm.observe.status import WorkerStatus
from asm.run import endings
from asm.run.board import FINAL_LABELS, Board
from asm.run.crew import build_team, instructions_for, set_up
from asm.run.delivery import deliver
from asm.run.endings import DeliveryResult, Ending
from asm.run.gate import UNTRUSTED_TOLD_SECONDS, vouched_text
from asm.run.meter import issue_caps
from asm.run.repo_setup import failure_details
from asm.run.texts import RunFacts, pull_body
from asm.spend.cost import MAX_OUTPUT_TOKENS
from asm.workspace import Checkout

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
    def work(claim: Claim) -> DeliveryResult:
        info = deps.github.issue(issue)  # read once it is ours: no other run changes it now
        return IssueRun(deps, status, issue, claim, info, on_progress, time_up).run()

    return deliver(deps, issue, status.worker, work)


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
        self.trusted = trusted_people(deps.github, issue.repo, deps.settings.trusted_permission)
        self.answered_by = ""  # who answered the team's questions, when that is why this run started
        self._comments: list[Remark] | None = None
        self.asked_before = False  # the issue was labelled needs-clarification at some point
        self.pushed = False
        self.replacing: str | None = None  # the issue branch's tip when the run began, all asm's own work

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> DeliveryResult:
        skip = self.why_skip()
        if skip:
            return DeliveryResult(f"{self.issue}: skipped, {skip}", "skipped")
        history = self.github.history(self.issue)
        try:
            vouched = vouched_text(self.deps, self.issue, history)
        except Untrusted as refusal:
            return self.refuse(str(refusal))
        # Only an issue that ever waited for answers has any: the others cost no read of their comments.
        self.asked_before = any(event.label == NEEDS_CLARIFICATION for event in history.labels)
        # GitHub shows a title as plain text: only what is invisible goes (the body is Markdown, sanitised whole).
        self.issue_title = strip_invisible(vouched.title)
        resumed = IN_PROGRESS in self.info.labels  # an earlier attempt died; it may have opened the PR already
        first_call = self.deps.ledger.worst_case(0, MAX_OUTPUT_TOKENS, self.settings.model_for(TEAM[0].name))
        capped = self.deps.ledger.day_cap_reached(self.issue.repo, self.caps, first_call)
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
        if NEEDS_CLARIFICATION in labels and self.settings.ready_label not in labels:
            # Answered by someone trusted, the issue resumes by itself; until then it waits.
            latest = answered(self.comments(), self.github.whoami(), self.trusted)
            if latest is not None:
                self.answered_by = ", ".join(sorted({f"@{answer.author}" for answer in latest.answers}))
                return None
            # Queued as answered, it is not (any more): the scan reads the repository whole next time.
            probe.forget(self.deps.redis, self.issue.repo)
        done = sorted(labels & set(FINAL_LABELS))
        if done and self.settings.ready_label not in labels:
            if IN_PROGRESS in labels:  # an ending whose last label change was cut short
                self.board.drop_label(IN_PROGRESS)
            return f"already {done[0]}"
        if not {self.settings.ready_label, IN_PROGRESS} & labels:
            return f"not labelled {self.settings.ready_label}"
        return None

    def comments(self) -> list[Remark]:
        """The issue's comments, read once per run."""
        if self._comments is None:
            self._comments = self.github.comments(self.issue)
        return self._comments

    def answers(self) -> tuple[Quoted, ...]:
        """The team's earlier questions with the trusted answers to them, as quoted data for every role."""
        if not (self.asked_before or self.answered_by):
            return ()
        rounds = [round_ for round_ in answer_rounds(self.comments(), self.github.whoami(), self.trusted)
                  if round_.answers]
        if not rounds:
            return ()
        return (Quoted("The team asked questions about this issue before, and people with write permission on "
                       "the repository answered them (asm's questions and each answer, oldest first). Build what "
                       "the issue asks, as the answers settle it.", answers_text(rounds)),)

    def refuse(self, reason: str) -> DeliveryResult:
        """Not asked for by anyone asm may act for: say why (once a day), take the label off, start nothing."""
        if self.deps.redis.set(told_key(self.issue, "untrusted"), 1, nx=True, ex=UNTRUSTED_TOLD_SECONDS):
            self.board.say("did not start on this issue.", reason)
        # Waiting for answers too: an answer cannot make the issue trusted, and must not queue it again and again.
        for label in (self.settings.ready_label, IN_PROGRESS, NEEDS_CLARIFICATION):
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
        start = "resumed the interrupted run" if resumed else \
            f"resumed with the answers of `{self.answered_by}`" if self.answered_by else "picked up this issue"
        self.board.say(f"{start} as asked by `{vouched.by}`{left_out}: Architect → Security → Tester → Product Owner.")
        pending = self.deps.workspaces.start(self.status.worker, self.issue, repo.clone_url, repo.default_branch)
        try:
            checkout = pending.wait()  # the setup script and the instruction files need the tree first
            refusal = self.keep_others_commits(checkout, repo)
            if refusal is not None:
                return refusal
            setup = set_up(self.deps, checkout, repo.default_branch, self.tracker)
            if not setup.ok:
                return self.end(endings.SETUP_FAILED, reason=setup.reason, details=failure_details(setup))
            # What reaches the model: the vouched text, with everything GitHub would not show removed.
            text = IssueText(self.issue.key, self.issue_title, sanitize(vouched.body), self.answers())
            label = "first run (resumed)" if resumed else "first run"
            self.team = build_team(self.deps, self.status.worker, self.issue, self.claim.check, self.tracker,
                                   self.check_time, text, pending, label,
                                   instructions_for(self.deps, checkout, repo.default_branch))
            outcome = run_workflow(self.team.perform, self.settings.max_revisions, self.tracker.on_step)
            ending = self.conclude(outcome, checkout, repo)
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
        reports = self.team.reports if self.team else []
        body = redact(pull_body(self.issue, outcome, self.facts(), files, reports), self.settings.secrets)
        body += f"\n{mark(pushed=[head])}\n"  # asm's memory: a failing check on this commit is asm's to fix
        # Saved before the push: a crash between push and pull request resumes from here, not from scratch.
        self.deps.redis.set(approved_key(self.issue), json.dumps({"sha": head, "body": body}), ex=APPROVED_TTL)
        try:
            self.deps.workspaces.replace(checkout, repo.clone_url, self.replacing)
        except BranchMoved as moved:
            return self.end(endings.BRANCH_MOVED, branch=moved.branch, sha=(moved.now or "a deletion")[:12])
        self.pushed = True
        self.claim.check()
        return self.github.open_pull(self.issue, self.title(), body, repo.default_branch)

    # -- endings ------------------------------------------------------------------------------

    def end(self, ending: Ending, say: bool = True, requeue_after: float | None = None,
            **facts: object) -> DeliveryResult:
        """Say why (unless told not to), set the label that ends the run, forget the run's bookkeeping."""
        words = {"ready": self.settings.ready_label, **facts}
        if say and ending.headline:
            # asm's memory that these are questions: a trusted reply after them resumes the issue.
            self.board.say(ending.headline.format(**words), ending.details.format(**words),
                           mark(questions=True) if ending.asks else "")
        self.board.set_label(ending.label or self.settings.ready_label)
        self.deps.redis.delete(attempts_key(self.issue), approved_key(self.issue))
        # The operator's word was for this request, now answered; questions leave it standing for the answers.
        if ending.label is not None and not ending.asks:
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

    def keep_others_commits(self, checkout: Checkout, repo: RepoInfo) -> DeliveryResult | None:
        """An ending, before the team starts, when the issue branch holds commits a new run would replace that
        are not asm's (the issue labelled ready again under a pull request someone pushed to); else None, and
        the tip this run may replace is noted."""
        tip = self.deps.workspaces.remote_branch_sha(repo.clone_url, self.issue.branch)
        foreign = self.deps.workspaces.foreign_commits(checkout, repo.clone_url, tip) if tip else []
        if foreign:
            shas = ", ".join(sha[:12] for sha in foreign[:10]) + (", ..." if len(foreign) > 10 else "")
            return self.end(endings.OTHERS_COMMITS, branch=self.issue.branch, count=len(foreign), shas=shas,
                            mention=self.settings.mention)
        self.replacing = tip
        return None

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
