"""A follow-up on a pull request of asm's: the team answers its review, or fixes its failing checks, on its branch.

The run holds the pull request's own claim. It reads the conversation again under it (the scan's
reading is only why it was queued), works from the branch's head in a fresh workspace, and pushes
one new commit, never a forced one. It ends in one reply on the pull request, which also records
what it answered: remarks made while it worked are left for the next follow-up, all in one run.
Its spend is the issue's: the same ledger and caps as the run that opened the pull request.
"""

from __future__ import annotations

import json
import logging
import time

from asm.agents.roles import TEAM
from asm.agents.team import IssueText, Quoted, Team
from asm.agents.workflow import Outcome, run_workflow
from asm.conversation.asks import FollowUp, checks_failed, follow_up
from asm.conversation.people import trusted_people
from asm.conversation.quote import checks_text, diff_text, remarks_text
from asm.conversation.threads import PullThread
from asm.deps import Deps
from asm.errors import (
    AlreadyClaimed,
    AsmError,
    ClaimLost,
    FleetPaused,
    ModelUnavailable,
    TimeLimitReached,
    Untrusted,
    WorkspaceError,
)
from asm.fleet import probe
from asm.fleet.claim import Claim
from asm.fleet.hold import pause_fleet, rest_model
from asm.fleet.queue import PROCESS_PULL
from asm.github import RepoInfo
from asm.guard.redaction import redact
from asm.guard.sanitize import sanitize, strip_invisible
from asm.keys import IssueRef, attempts_key, reply_key
from asm.observe.progress import OnProgress, ProgressTracker
from asm.observe.status import WorkerStatus
from asm.quoting import clip
from asm.run import replies
from asm.run.crew import build_team, instructions_for, set_up
from asm.run.delivery import deliver
from asm.run.endings import DeliveryResult
from asm.run.gate import vouched_text
from asm.run.issue_run import APPROVED_TTL, MAX_ATTEMPTS
from asm.run.meter import issue_caps
from asm.run.replies import FollowUpEnding
from asm.run.repo_setup import failure_details
from asm.run.texts import NOTE_LIMIT, per_role
from asm.spend.cost import MAX_OUTPUT_TOKENS, Usage
from asm.spend.ledger import Spend
from asm.workspace import Checkout

log = logging.getLogger(__name__)


def process_pull(deps: Deps, status: WorkerStatus, pull: IssueRef, on_progress: OnProgress = lambda _: None,
                 time_up: tuple[type[BaseException], ...] = ()) -> DeliveryResult:
    """Follow up on the pull request if this delivery wins its claim and it still asks for something."""
    result = deliver(deps, pull, status.worker,
                     lambda claim: FollowUpRun(deps, status, pull, claim, on_progress, time_up).run(), PROCESS_PULL)
    deps.metrics.count("asm_follow_ups_total", outcome=result.outcome)
    log.info("%s [%s] %s", pull, status.worker, result.summary)
    return result


class FollowUpRun:
    """One follow-up on one pull request, under its claim."""

    def __init__(self, deps: Deps, status: WorkerStatus, pull: IssueRef, claim: Claim, on_progress: OnProgress,
                 time_up: tuple[type[BaseException], ...]) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.github = deps.github
        self.status = status
        self.pull = pull
        self.claim = claim
        self.on_progress = on_progress
        self.time_up = time_up
        self.started = time.monotonic()
        self.issue = pull  # the issue it works for, once the pull request names it
        self.tracker = ProgressTracker(pull, status, on_progress)
        self.issue_claim = claim  # the issue's own claim, once taken (until then, the pull request's stands in)
        self.before = Spend(Usage(), 0.0, 0, 0.0)  # the issue's spend when the run began, once the issue is known
        self.pushed = ""  # the commit this run pushed
        self.pushing: tuple[str, str, str] | None = None  # the commit, clone URL and branch of a push under way

    def run(self) -> DeliveryResult:
        thread = self.github.pull_thread(self.pull.repo, self.pull.number)
        if thread is None or not thread.is_asms(self.github.whoami()):
            return DeliveryResult(f"{self.pull}: skipped, not an open pull request of asm's", "skipped")
        self.issue = IssueRef(self.pull.repo, thread.issue_number or 0)
        try:
            # The issue's claim too: its own run (labelled ready again) must not rebuild the branch meanwhile.
            with Claim(self.deps.redis, self.issue, self.settings.claim_ttl, self.status.worker) as issue_claim:
                self.issue_claim = issue_claim
                return self.answer(thread)
        except AlreadyClaimed:  # still asking: the next scan queues it again
            return DeliveryResult(f"{self.pull}: not started, a run of {self.issue} holds the issue", "deferred")

    def answer(self, thread: PullThread) -> DeliveryResult:
        """Under both claims: the follow-up the pull request asks for, if any."""
        self.tracker = ProgressTracker(self.issue, self.status, self.on_progress)
        self.before = self.deps.ledger.spend(self.issue)
        if self.finish_interrupted(thread):
            return DeliveryResult(f"{self.pull}: replied for the interrupted run that pushed its commit", "replied",
                                  completed=True)
        trusted = trusted_people(self.github, self.pull.repo, self.settings.trusted_permission)
        ask = follow_up(thread, self.github.whoami(), self.settings.mention, trusted, self.settings.max_ci_fixes)
        if ask is None:
            # What the scan remembered of the repository said otherwise: read it whole next time, not replay it.
            probe.forget(self.deps.redis, self.pull.repo)
            return DeliveryResult(f"{self.pull}: skipped, nothing asked of asm on it", "skipped")
        if ask.kind == "ci-stop":
            checks = ", ".join(f"`{strip_invisible(check.name)}`" for check in ask.checks)
            return self.end(replies.CHECKS_STOPPED, thread, ask, fixes=ask.fixes_done, checks=f"Failing: {checks}.")
        caps = issue_caps(self.settings, len(TEAM))
        capped = self.deps.ledger.day_cap_reached(self.pull.repo, caps,
                                                  self.deps.ledger.worst_case(0, MAX_OUTPUT_TOKENS,
                                                                             self.settings.model_for(TEAM[0].name)))
        if capped:  # nothing is spent and nothing is said: the request waits for the next UTC day
            return DeliveryResult(f"{self.pull}: not started, {capped}", "capped")
        attempt = self.deps.redis.incr(attempts_key(self.pull))
        self.deps.redis.expire(attempts_key(self.pull), APPROVED_TTL)
        if attempt > MAX_ATTEMPTS:
            return self.end(replies.TOO_MANY_ATTEMPTS, thread, ask, attempts=MAX_ATTEMPTS)
        self.tracker.spent_usd = self.before.usd
        self.status.working(self.issue)
        result = DeliveryResult(f"{self.pull}: stopped", "stopped")
        try:
            result = self.work(thread, ask)
            return result
        finally:
            stage_seconds = self.tracker.close_stage()
            self.deps.metrics.observe_stages(stage_seconds)
            self.status.finished(self.issue, result.summary, result.completed, self.elapsed(),
                                 self.deps.ledger.spend(self.issue).usd, stage_seconds)

    def work(self, thread: PullThread, ask: FollowUp) -> DeliveryResult:
        repo = self.github.repo(self.pull.repo)
        self.tracker.enter("workspace")
        # The tree starts on the default branch, where the setup script runs with the network; only then
        # does it move to the pull request's head, whose commits the agents wrote.
        pending = self.deps.workspaces.start(self.status.worker, self.issue, repo.clone_url, repo.default_branch,
                                             at=thread.head_sha)
        team: Team | None = None
        try:
            setup = set_up(self.deps, pending.wait(), repo.default_branch, self.tracker)
            if not setup.ok:
                return self.end(replies.SETUP_FAILED, thread, ask, reason=setup.reason,
                                details=failure_details(setup))
            checkout = self.deps.workspaces.switch(pending.wait(), thread.head_sha)
            in_pull = self.deps.workspaces.diff(checkout, thread.base_ref, names_only=True).splitlines()
            team = build_team(self.deps, self.status.worker, self.issue, self.check_claims, self.tracker,
                              self.check_time, self.issue_text(thread, ask, checkout), pending,
                              f"follow-up on #{self.pull.number}: {ask.label}",
                              instructions_for(self.deps, checkout, repo.default_branch, in_pull))
            outcome = run_workflow(team.perform, self.settings.max_revisions, self.tracker.on_step)
            return self.conclude(outcome, thread, ask, checkout, repo, team)
        except ModelUnavailable as busy:
            rest = rest_model(self.deps.redis, str(busy), self.settings.retry_backoff_seconds)
            self.deps.redis.delete(attempts_key(self.pull))
            return DeliveryResult(f"{self.pull}: given back, model unavailable, retry in {rest:.0f}s", "given-back",
                                  requeue_after=rest + 1)
        except FleetPaused as stop:
            pause_fleet(self.deps.redis, str(stop))
            self.deps.redis.delete(attempts_key(self.pull))
            return DeliveryResult(f"{self.pull}: given back, fleet paused: {stop}", "given-back")
        except ClaimLost:
            raise
        except (TimeLimitReached,) + self.time_up:
            return self.end(replies.TIME_LIMIT, thread, ask, team, seconds=self.elapsed())
        except Exception as error:  # the task boundary: the pull request hears why, whatever broke
            if not isinstance(error, AsmError):
                log.exception("%s: unexpected error", self.pull)
            return self.end(replies.ending_for(error), thread, ask, team, error=error, kind=type(error).__name__)
        finally:
            self.deps.workspaces.remove(pending)

    def issue_text(self, thread: PullThread, ask: FollowUp, checkout: Checkout) -> IssueText:
        """The issue as vouched for, the pull request's diff, and what the follow-up answers, all as quoted data."""
        try:
            vouched = vouched_text(self.deps, self.issue)
            title, body = strip_invisible(vouched.title), sanitize(vouched.body)
        except Untrusted:
            # The reviewer asked for this run; the issue's text may have changed hands since. Work from the remarks.
            title, body = f"(issue #{self.issue.number})", "(The issue's current text is not vouched for by anyone " \
                "asm acts for, so it is left out: work from the pull request and the remarks below.)"
        head = thread.head_sha[:12]
        diff = self.deps.workspaces.diff(checkout, thread.base_ref)
        more = [Quoted(f"Pull request #{thread.number}, which the team opened for this issue on the branch "
                       f"`{thread.head_ref}`, is checked out at its head {head}; this is its diff against "
                       f"`{thread.base_ref}`.", diff_text(diff))]
        if ask.kind == "review":
            more.append(Quoted("This run is a follow-up on that pull request: what people with write permission "
                               "said on it since the team last answered, oldest first (each names its author, and "
                               "its file and line where it has one; the team's own questions back, if it asked "
                               "any, are among them). Change the code on this branch to answer them; the pull "
                               "request's earlier work stays.", remarks_text(ask.remarks)))
            if checks_failed(thread.checks):  # "the tests still fail": a request that needs what failed
                reports = self.github.check_reports(self.pull.repo, thread.head_sha)
                more.append(Quoted(f"The checks on {head} have finished, and these failed, as GitHub reports "
                                   "them; the remarks may be about them.", checks_text(reports)))
        else:
            reports = self.github.check_reports(self.pull.repo, thread.head_sha)
            more.append(Quoted(f"This run is a follow-up on that pull request: its checks on {head} finished, and "
                               "these failed, as GitHub reports them. Find out why and fix the code on this "
                               "branch (or a test, if the test is what is wrong).", checks_text(reports)))
        return IssueText(self.issue.key, title, body, tuple(more))

    def conclude(self, outcome: Outcome, thread: PullThread, ask: FollowUp, checkout: Checkout, repo: RepoInfo,
                 team: Team) -> DeliveryResult:
        if outcome.kind in replies.VERDICT_ENDINGS:
            return self.end(replies.VERDICT_ENDINGS[outcome.kind], thread, ask, team, detail=outcome.detail,
                            revisions=outcome.revisions)
        self.tracker.enter("push")
        self.check_claims()
        what = "Answer the review" if ask.kind == "review" else "Fix the failing checks"
        head = self.deps.workspaces.commit(checkout, f"{what} on #{thread.number}\n\nFor #{self.issue.number}")
        notes = "\n\n".join(f"**{who}**: {clip(text, NOTE_LIMIT // 4)}" for who, text in outcome.notes[:1])
        verdict = f"**Product Owner**: {clip(outcome.detail, NOTE_LIMIT // 4)}" if outcome.detail.strip() else ""
        detail = "\n\n".join(part for part in (notes, verdict) if part)
        if head is None:
            return self.end(replies.NO_CHANGE, thread, ask, team, detail=detail)
        tip = self.deps.workspaces.remote_branch_sha(repo.clone_url, thread.head_ref)
        if tip != checkout.base_sha:
            return self.end(replies.BRANCH_MOVED, thread, ask, team, sha=(tip or "a deletion")[:12])
        files = self.deps.workspaces.changed_files(checkout)
        listed = "\n".join(f"- `{name}`" for name in files[:50])
        body, summary = self.reply(replies.PUSHED, thread, ask, team, pushed=head, sha=head[:12],
                                   detail=f"{detail}\n\nFiles changed:\n{listed}")
        # Saved before the push: a run interrupted between the push and its reply is finished by the next
        # delivery, which posts this reply instead of answering the same remarks again.
        self.deps.redis.set(reply_key(self.pull), json.dumps({"sha": head, "body": body}), ex=APPROVED_TTL)
        self.pushing = (head, repo.clone_url, thread.head_ref)
        self.deps.workspaces.push(checkout, repo.clone_url)
        self.pushed = head
        return self.post(body, summary, replies.PUSHED)

    def finish_interrupted(self, thread: PullThread) -> bool:
        """Post the reply of an earlier run that pushed its commit and was stopped before replying."""
        raw = self.deps.redis.get(reply_key(self.pull))
        if raw is None:
            return False
        saved = json.loads(raw)
        if saved["sha"] != thread.head_sha:  # never pushed, or the branch moved on: the reply is not owed
            self.deps.redis.delete(reply_key(self.pull))
            return False
        self.check_claims()
        if saved["sha"] not in thread.memory.pushed:  # else the reply did reach GitHub before the run stopped
            self.github.comment(self.pull, saved["body"])
        self.deps.redis.delete(reply_key(self.pull), attempts_key(self.pull))
        return True

    def end(self, ending: FollowUpEnding, thread: PullThread, ask: FollowUp, team: Team | None = None,
            **facts: object) -> DeliveryResult:
        """One reply on the pull request: what happened and what it cost, with what the run answered remembered."""
        if self.pushing and not self.pushed:  # stopped during the push: the branch says whether it got there
            head, clone_url, branch = self.pushing
            try:
                if self.deps.workspaces.remote_branch_sha(clone_url, branch) == head:
                    self.pushed = head
            except WorkspaceError:
                log.warning("%s: could not tell whether %s reached %s", self.pull, head[:12], branch)
        body, summary = self.reply(ending, thread, ask, team, pushed=self.pushed or None, **facts)
        return self.post(body, summary, ending)

    def reply(self, ending: FollowUpEnding, thread: PullThread, ask: FollowUp, team: Team | None,
              pushed: str | None = None, **facts: object) -> tuple[str, str]:
        """The reply's text (redacted) and the run's one-line summary."""
        pushed_words = f"{pushed[:12]} was pushed" if pushed else "nothing was pushed"
        words = {"mention": self.settings.mention, "branch": thread.head_ref, "revisions": self.tracker.revision,
                 "pushed": pushed_words, **facts}
        headline = ending.headline.format(**words)
        details = ending.details.format(**words)
        state: dict[str, object] = {}
        if ask.kind == "review":
            theirs = [remark for remark in ask.remarks if remark.author != self.github.whoami()]
            if ending.settles:
                details += "\n\nAnswering:\n" + replies.answered_list(theirs)
            else:  # taken up, not finished: they start nothing by themselves, and the next run is given them
                details += ("\n\nStill open, given again to the next run a mention starts:\n"
                            + replies.answered_list(theirs))
                state["owed"] = [remark.key for remark in theirs]
            state["addressed"] = [remark.key for remark in theirs]
            if ending.asks:
                state["questions"] = True
        elif ask.kind == "ci":
            state["ci_fix"] = thread.head_sha
        else:
            state["ci_stopped"] = thread.head_sha
        if pushed:
            state["pushed"] = [pushed]
        after = self.deps.ledger.spend(self.issue)
        body = replies.reply(headline, details, replies.spent_since(self.before, after), after.usd, self.elapsed(),
                             self.tracker.revision, self.status.worker,
                             roles=per_role(team.reports) if team else "", issue=self.issue.key, **state)
        return redact(body, self.settings.secrets), f"{self.pull}: {ending.outcome}, {headline}"

    def post(self, body: str, summary: str, ending: FollowUpEnding) -> DeliveryResult:
        self.tracker.note(summary)
        if not self.pushed:  # once its commit is out, the reply that records it is owed whatever the claim says
            self.claim.check()
            self.issue_claim.check()
        self.github.comment(self.pull, body)
        self.deps.redis.delete(attempts_key(self.pull), reply_key(self.pull))
        return DeliveryResult(summary, ending.outcome, completed=ending.completed)

    def check_claims(self) -> None:
        self.claim.check()
        self.issue_claim.check()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def check_time(self) -> None:
        if self.elapsed() >= self.settings.task_time_limit:
            raise TimeLimitReached(f"ran {self.elapsed():.0f}s, the limit is {self.settings.task_time_limit:g}s")
