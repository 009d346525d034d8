"""The fleet end to end against the scripted model answering like Claude Sonnet 5.5 (asm's default model): a real
`celery -A asm worker` on a real Redis, signed thinking blocks checked on every call, stop reasons on the way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from asm.fleet.queue import enqueue
from asm.keys import IssueRef
from asm.observe.transcripts import Transcripts
from asm.sandbox.fleet import Sandbox, running_fleet, wait_for
from asm.sandbox.redis_server import RedisServer
from asm.sandbox.sample_repo import SOLUTIONS

SETTLE_TIMEOUT = 90
REPOS = ("acme/thinking", "acme/stops", "acme/declined")


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox and one worker of three slots, its scripted model answering in the Sonnet 5.5 style."""
    with running_fleet(tmp_path_factory.mktemp("sonnet"), redis_url=redis_server.url, slots=3, name="sonnet",
                       repos=REPOS, model_style="sonnet-5-5") as box:
        yield box


def work(fleet: Sandbox, repo: str, numbers: list[int]) -> None:
    from asm.celery_app import app

    client = redis.Redis.from_url(fleet.redis_url)
    for number in numbers:
        assert enqueue(client, app, IssueRef(repo, number), by="test", stale_after=600)
    assert wait_for(lambda: fleet.settled(repo, numbers), SETTLE_TIMEOUT), fleet.workers[0].log()[-4000:]


def pulls_for(fleet: Sandbox, repo: str, number: int) -> list:
    return [pull for pull in fleet.github.pulls(repo) if pull.head == f"ai-feature/issue-{number}"]


def test_issues_become_pull_requests_with_every_thinking_block_sent_back_as_it_came(fleet: Sandbox) -> None:
    repo = fleet.create_repo("acme/thinking")
    numbers = fleet.add_sample_issues(3, repo)

    work(fleet, repo, numbers)

    for number, solution in zip(numbers, SOLUTIONS, strict=False):
        [pull] = pulls_for(fleet, repo, number)
        assert fleet.github.file_at(repo, pull.head, solution.module_path) == solution.code
        assert fleet.github.issue(repo, number).labels == ("in-review",)
    book = Transcripts(redis.Redis.from_url(fleet.redis_url), ())
    transcripts = [step for issue in (IssueRef(repo, number) for number in numbers) for run in book.runs(issue)
                   for step in book.conversations(issue, run.run)]
    blocks = [block for transcript in transcripts for message in transcript.messages
              if message["role"] == "assistant" for block in message["content"]]
    assert len(transcripts) == 4 * 3
    assert sum(block["type"] == "thinking" and bool(block["signature"]) for block in blocks) >= 11 * 3
    assert any(block["type"] == "redacted_thinking" for block in blocks)
    assert fleet.model.thinking_dropped == 0


def test_paused_and_cut_replies_still_end_in_a_pull_request(fleet: Sandbox) -> None:
    repo = fleet.create_repo("acme/stops")
    solution = SOLUTIONS[1]
    number = fleet.add_issue(repo, solution.title, f"{solution.body}\n\n"
                             "asm-sandbox: stop=pause_turn@0,max_tokens@1,max_tokens@3")

    work(fleet, repo, [number])

    [pull] = pulls_for(fleet, repo, number)
    assert fleet.github.file_at(repo, pull.head, solution.module_path) == solution.code


def test_a_refusal_ends_the_issue_ai_failed_saying_the_model_declined(fleet: Sandbox) -> None:
    repo = fleet.create_repo("acme/declined")
    number = fleet.add_issue(repo, SOLUTIONS[2].title, f"{SOLUTIONS[2].body}\n\nasm-sandbox: stop=refusal@1")

    work(fleet, repo, [number])

    issue = fleet.github.issue(repo, number)
    assert issue.labels == ("ai-failed",)
    assert "the model declined to work on this issue" in issue.comments[-1]
    assert 'policy area `cyber`, "This request was declined because it could enable cyber harm"' in issue.comments[-1]
    assert "Traceback" not in issue.comments[-1]
    assert pulls_for(fleet, repo, number) == []
