"""The team for one run, built one way for every kind of run: the issue's meter, the working tree, a transcript.

An issue's first run and a follow-up on its pull request differ in what they tell the team and how
they end; what the agents work with is the same: the tree the repository's setup script prepared,
its instruction files, the issue's ledger and caps checked with the run's claim and deadline before
every model call, each role on its model, every step's conversation kept.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from asm.agents.instructions import RepositoryInstructions
from asm.agents.roles import TEAM
from asm.agents.team import IssueText, Team
from asm.agents.tools import WorkingTree
from asm.deps import Deps
from asm.fleet.hold import model_answered
from asm.guard.jail import SHOWN_ROOT
from asm.guard.redaction import redact
from asm.keys import IssueRef
from asm.observe.progress import ProgressTracker
from asm.run.meter import IssueMeter, issue_caps
from asm.run.repo_setup import SetupResult, run_setup
from asm.workspace import Checkout, Pending


def set_up(deps: Deps, checkout: Checkout, default_branch: str, tracker: ProgressTracker) -> SetupResult:
    """The repository's `.asm/setup.sh` (the default branch's), run in the tree before any agent starts."""
    tracker.enter("setup")
    result = run_setup(deps.workspaces, checkout, default_branch, lambda text: redact(text, deps.settings.secrets))
    if result.ran:
        tracker.note(f".asm/setup.sh {'finished' if result.ok else 'failed: ' + result.reason} "
                     f"in {result.seconds:.0f}s")
    if result.ran and result.ok:
        # What it installed or built is the tree's, not the change's: the pull request never carries it.
        deps.workspaces.set_aside_untracked(checkout)
    return result


def instructions_for(deps: Deps, checkout: Checkout, default_branch: str,
                     changed_before: Sequence[str] = ()) -> Callable[[], str]:
    """The repository's instruction files for each step: the root ones, and the nested AGENTS.md of what the
    team (and, on a follow-up, its pull request) changed so far, read from the default branch in asm's own
    repository."""
    instructions = RepositoryInstructions.at(deps.workspaces, checkout, f"refs/heads/{default_branch}")
    tag = f"instructions-{secrets.token_hex(6)}"  # a fence the files cannot close
    if not instructions.nested:  # the same text for every step: no look into the tree (a sandbox run) per step
        text = instructions.text((), tag)
        return lambda: text
    return lambda: instructions.text([*changed_before, *deps.workspaces.changed_in_tree(checkout)], tag)


def build_team(deps: Deps, worker: str, issue: IssueRef, check_claim: Callable[[], None], tracker: ProgressTracker,
               check_time: Callable[[], None], text: IssueText, pending: Pending, label: str,
               instructions: Callable[[], str] = lambda: "") -> Team:
    """The team that works `text` in the workspace `pending` is making; `label` names the run in its transcript."""
    model_answers = lambda _: model_answered(deps.redis)  # noqa: E731 (a billed reply ends an outage)
    meter = IssueMeter(deps.ledger, deps.metrics, issue, worker, issue_caps(deps.settings, roles=len(TEAM)),
                       checks=(check_claim, check_time), on_charge=(tracker.charged, model_answers))
    jail = deps.jail
    tree = WorkingTree(pending.tree, SHOWN_ROOT if jail.confined else str(pending.tree), pending.scratch,
                       owner=jail.owner, ready=pending.wait)
    context = {"repo": issue.repo, "root": tree.shown_root, "branch": issue.branch, "issue_key": issue.key}
    transcript = deps.transcripts.start(issue, label, worker)
    return Team(deps.models, meter, tree, jail, text, context, deps.settings.max_turns, transcript, instructions)
