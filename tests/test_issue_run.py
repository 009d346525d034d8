"""One issue's run, worked in this process through `asm.run.issue_run.process_issue` with deps built from
the sandbox's settings, on the real Redis and the sandbox GitHub and model: the endings no process
has to die for, each asserted on GitHub and in Redis."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping

import pytest
import redis

from asm.keys import METRICS, IssueRef, attempts_key
from asm.observe.metrics import field
from asm.observe.progress import Progress
from asm.run.issue_run import MAX_ATTEMPTS
from asm.sandbox.fleet import Sandbox
from asm.sandbox.sample_repo import SOLUTIONS
from asm.spend.cost import PRICES, Usage

REPO = "acme/textkit"


class Killed(BaseException):
    """Stands for the worker process dying mid-run: nothing of the run's own handling catches it."""


def kill_at(stage: str):
    """An `on_progress` that ends the run, as a killed process would, when it reaches `stage`."""
    def watch(progress: Progress) -> None:
        if progress.stage == stage:
            raise Killed(stage)

    return watch


def test_auto_merge_merges_the_pull_request_and_the_merge_closes_the_issue(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)

    result, _ = work_issue(REPO, number, ASM_AUTO_MERGE="true")

    assert result.outcome == "in-review" and result.completed
    [pull] = sandbox.github.pulls(REPO)
    assert pull.merged and pull.state == "closed"
    solution = SOLUTIONS[0]
    assert sandbox.github.file_at(REPO, "main", solution.module_path) == solution.code  # the change is on main
    issue = sandbox.github.issue(REPO, number)
    assert issue.state == "closed"  # by the merge: the pull request says "Closes #N"
    assert "and merged it (ASM_AUTO_MERGE)" in issue.comments[-1] and pull.html_url in issue.comments[-1]


def test_without_auto_merge_the_pull_request_waits_for_a_person(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)

    work_issue(REPO, number)

    [pull] = sandbox.github.pulls(REPO)
    assert not pull.merged and pull.state == "open"
    assert sandbox.github.issue(REPO, number).state == "open"


def test_a_run_interrupted_every_time_is_given_up_after_max_attempts(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    client = redis.Redis.from_url(sandbox.redis_url)

    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            work_issue(REPO, number, on_progress=kill_at("tester"))
        except Killed:
            pass
        # What a dead run leaves: the issue in progress, its attempt counted, no end label.
        assert sandbox.github.issue(REPO, number).labels == ("in-progress",)
        assert int(client.get(attempts_key(IssueRef(REPO, number)))) == attempt
    calls = sandbox.model.calls

    result, _ = work_issue(REPO, number)

    assert result.outcome == "ai-failed" and not result.completed
    assert sandbox.model.calls == calls  # given up before the model is asked again
    issue = sandbox.github.issue(REPO, number)
    assert issue.labels == ("ai-failed",)
    assert f"gave up after {MAX_ATTEMPTS} attempts" in issue.comments[-1] and "`ready-for-dev`" in issue.comments[-1]
    assert sum("resumed the interrupted run" in c for c in issue.comments) == MAX_ATTEMPTS - 1
    assert not client.exists(attempts_key(IssueRef(REPO, number)))  # a new label starts a new count
    assert sandbox.github.pulls(REPO) == []


def test_a_stray_in_progress_beside_an_end_label_is_taken_off_and_nothing_runs(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    # An ending whose last label change was cut short: in-review set, in-progress not yet removed.
    number = sandbox.add_issue(REPO, "Add `slugify`", labels=("in-review", "in-progress"))

    result, _ = work_issue(REPO, number)

    assert result.outcome == "skipped" and "already in-review" in result.summary
    assert sandbox.github.issue(REPO, number).labels == ("in-review",)
    assert sandbox.model.calls == 0 and sandbox.github.issue(REPO, number).comments == ()


def test_an_end_label_beside_the_ready_label_is_worked_again(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    sandbox.github.add_labels(REPO, number, ["ai-failed"])  # labelled ready again after a failure

    result, _ = work_issue(REPO, number)

    assert result.outcome == "in-review"
    assert sandbox.github.issue(REPO, number).labels == ("in-review",)


def test_every_billed_call_is_counted_in_the_metrics_beside_the_ledger(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)

    _, deps = work_issue(REPO, number)

    spend = deps.ledger.spend(IssueRef(REPO, number))
    metrics = {key.decode(): float(value) for key, value in redis.Redis.from_url(sandbox.redis_url)
               .hgetall(METRICS).items()}
    assert metrics[field("asm_spend_usd_total", repo=REPO)] == spend.usd > 0
    assert metrics[field("asm_tokens_total", kind="output")] == spend.usage.output_tokens
    assert metrics[field("asm_tokens_total", kind="cache_read")] == spend.usage.cache_read_tokens
    assert metrics[field("asm_issues_total", outcome="in-review")] == 1


def billed(usage: Mapping[str, int]) -> Usage:
    """A call's usage as the model server billed it."""
    return Usage(usage["input_tokens"], usage["output_tokens"], usage["cache_creation_input_tokens"],
                 usage["cache_read_input_tokens"])


def test_each_role_calls_its_own_model_and_each_call_is_charged_at_that_model_s_prices(sandbox: Sandbox,
                                                                                      work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    dear, cheap = "claude-opus-4-1", "claude-haiku-4-5"  # $15 / $75 and $1 / $5 per MTok of input / output

    result, deps = work_issue(REPO, number, ASM_MODEL=cheap, ASM_MODEL_ARCHITECT=dear)

    assert result.outcome == "in-review"
    asked = sandbox.model.requests
    assert {(call.role, call.model) for call in asked} == {
        ("Architect", dear), ("Security reviewer", cheap), ("Tester", cheap), ("Product Owner", cheap)}
    spend = deps.ledger.spend(IssueRef(REPO, number))
    assert spend.calls == len(asked)
    calls = [(billed(call.usage), PRICES[call.model]) for call in asked]
    assert spend.usd == pytest.approx(sum(usage.cost(price) for usage, price in calls))
    assert spend.saved_usd == pytest.approx(sum(usage.saved_by_cache(price) for usage, price in calls))
    assert spend.usd > 2 * sum(billed(call.usage).cost(PRICES[cheap]) for call in asked)  # the Architect's is dear
    # One client per model, all on one connection pool to the API.
    assert deps.models["security"] is deps.models["tester"] is deps.models["po"] is not deps.models["architect"]
    assert deps.models["architect"].client is deps.models["po"].client


def per_role_rows(body: str) -> list[list[str]]:
    """The cells of the per-role table at the end of a pull request's body."""
    block = body[body.rindex("<details>"):]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith("| ") and not line.startswith(("| role", "| ---"))]


def test_the_pull_request_ends_with_a_collapsed_report_of_each_role_step_adding_up_to_the_spend(
        sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    solution = SOLUTIONS[0]
    number = sandbox.add_issue(REPO, solution.title, f"{solution.body}\nasm-sandbox: po=REVISE,APPROVE")

    _, deps = work_issue(REPO, number, ASM_MODEL_PO="claude-haiku-4-5")

    [pull] = sandbox.github.pulls(REPO)
    body = re.sub(r"(\s*<!--.*?-->)*\s*$", "", pull.body, flags=re.S)  # what a reader sees: no hidden markers
    spend = deps.ledger.spend(IssueRef(REPO, number))
    assert body.endswith("</details>") and body.index("## Cost") < body.index("<details>")  # the sections stay
    assert f"<details><summary>Per role: {spend.calls} turns, ${spend.usd:.4f}</summary>" in body
    rows = per_role_rows(body)
    titles = ["Architect", "Security reviewer", "Tester", "Product Owner"]
    assert [(row[0], row[1]) for row in rows] == [(title, n) for n in ("1", "2") for title in titles]
    assert [row[2] for row in rows] == ["`claude-sonnet-5-5`"] * 3 + ["`claude-haiku-4-5`"] + \
        ["`claude-sonnet-5-5`"] * 3 + ["`claude-haiku-4-5`"]
    assert sum(int(row[3]) for row in rows) == spend.calls == len(sandbox.model.requests)
    assert sum(int(row[4].replace(",", "")) for row in rows) == spend.usage.total_tokens
    assert sum(float(row[5].lstrip("$")) for row in rows) == pytest.approx(spend.usd, abs=0.00005 * len(rows))
    assert all(row[6].endswith("s") for row in rows)
    assert f"- **Architect** (round 1): Implemented `{solution.function}` in {solution.module_path}" in body
    assert "- **Product Owner** (round 2): " in body


# -- labelled ready again under its pull request: asm's own commits are rebuilt, nobody else's are dropped ------


def push_as_a_person(sandbox: Sandbox, branch: str, where) -> str:
    """A commit by someone other than asm on `branch`, pushed straight to the repository; its sha."""
    env = {"GIT_AUTHOR_NAME": "Pat", "GIT_AUTHOR_EMAIL": "pat@example.invalid", "GIT_COMMITTER_NAME": "Pat",
           "GIT_COMMITTER_EMAIL": "pat@example.invalid", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "clone", "-q", "-b", branch, str(sandbox.github.repo(REPO).path), str(where)], check=True,
                   env=env)
    (where / "NOTES.md").write_text("a person's work\n")
    for command in (["add", "NOTES.md"], ["commit", "-qm", "mine"], ["push", "-q", "origin", branch]):
        subprocess.run(["git", *command], cwd=where, check=True, env=env)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, check=True, env=env, capture_output=True,
                          text=True).stdout.strip()


def test_labelled_ready_again_over_asms_own_commits_the_branch_is_rebuilt_and_its_pull_request_says_so(
        sandbox: Sandbox, work_issue, tmp_path) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    work_issue(REPO, number)
    [pull] = sandbox.github.pulls(REPO)
    first = sandbox.github.branch_sha(REPO, pull.head)
    push_as_a_person(sandbox, "main", tmp_path / "main")  # the default branch moves on: the rebuild starts there
    sandbox.github.set_labels(REPO, number, ["ready-for-dev"])

    result, _ = work_issue(REPO, number)

    assert result.outcome == "in-review"
    rebuilt = sandbox.github.branch_sha(REPO, pull.head)
    assert rebuilt != first
    [again] = sandbox.github.pulls(REPO)  # the same pull request, describing the commit it now holds
    assert again.number == pull.number and rebuilt in again.body and first not in again.body


def test_labelled_ready_again_over_a_persons_commit_nothing_runs_and_nothing_is_replaced(
        sandbox: Sandbox, work_issue, tmp_path) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    work_issue(REPO, number)
    [pull] = sandbox.github.pulls(REPO)
    theirs = push_as_a_person(sandbox, pull.head, tmp_path / "person")
    sandbox.github.set_labels(REPO, number, ["ready-for-dev"])
    calls = sandbox.model.calls

    result, _ = work_issue(REPO, number)

    assert result.outcome == "ai-failed" and "others' commits" in result.summary
    assert sandbox.model.calls == calls, "refused before the team started"
    assert sandbox.github.branch_sha(REPO, pull.head) == theirs
    issue = sandbox.github.issue(REPO, number)
    assert issue.labels == ("ai-failed",)
    assert theirs[:12] in issue.comments[-1] and "never drops anyone's commits" in issue.comments[-1]


def test_a_person_pushing_while_the_team_works_keeps_their_commit_and_the_run_says_so(
        sandbox: Sandbox, work_issue, tmp_path) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    work_issue(REPO, number)
    [pull] = sandbox.github.pulls(REPO)
    sandbox.github.set_labels(REPO, number, ["ready-for-dev"])
    pushed: list[str] = []

    def push_once(progress: Progress) -> None:  # after the run looked at the branch, before it pushes
        if progress.stage == "tester" and not pushed:
            pushed.append(push_as_a_person(sandbox, pull.head, tmp_path / "person"))

    result, _ = work_issue(REPO, number, on_progress=push_once)

    assert result.outcome == "ai-failed"
    assert sandbox.github.branch_sha(REPO, pull.head) == pushed[0]
    comment = sandbox.github.issue(REPO, number).comments[-1]
    assert "nothing was pushed" in comment and pushed[0][:12] in comment
