"""Webhooks into runs: the sandbox GitHub posts its deliveries, signed as GitHub signs them, to a real
`asm webhook` process, and a real `celery -A asm worker` works what they queue. No beat runs: whatever
is worked here, a delivery asked for.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import requests

from asm.conversation.markers import read_marks
from asm.keys import QUEUED, IssueRef
from asm.sandbox.fleet import Sandbox, running_fleet, wait_for
from asm.sandbox.github_hooks import Delivery, Hooks
from asm.sandbox.redis_server import RedisServer
from asm.sandbox.sample_repo import SOLUTIONS
from asm.webhook.intake import looking_key
from asm.webhook.signature import sign

SECRET = "whsec-" + uuid.uuid4().hex
SETTLE_TIMEOUT = 90
REVIEWER = "maintainer"
REPOS = ("acme/labelled", "acme/talked", "acme/unsigned")


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, str]]:
    """A worker of two slots and `asm webhook`, on the sandbox, and the sandbox's hook to it, signed."""
    with running_fleet(tmp_path_factory.mktemp("webhooks"), redis_server.url, slots=2, name="hooked",
                       repos=REPOS) as box:
        _, url = box.start_webhook(SECRET)
        box.webhooks().add(url + "/webhook", SECRET)
        yield box, url


@pytest.fixture
def client(fleet: tuple[Sandbox, str]) -> redis.Redis:
    return redis.Redis.from_url(fleet[0].redis_url)


def hooks(box: Sandbox) -> Hooks:
    assert box.hooks is not None
    return box.hooks


def deliveries(box: Sandbox, repo: str, event: str) -> list[Delivery]:
    assert hooks(box).wait_idle()
    return [d for d in hooks(box).deliveries if d.repo == repo and d.event == event]


def labelled_into_a_pull(box: Sandbox, client: redis.Redis, repo: str) -> tuple[int, int]:
    """A new repository, a reviewer with write permission, and a sample issue labelled ready by its owner,
    which the fleet works into a pull request: (issue, pull request)."""
    box.create_repo(repo)
    if box.github.user(REVIEWER) is None:
        box.github.add_user(REVIEWER)
    box.github.grant(repo, REVIEWER, "write")
    solution = SOLUTIONS[0]
    number = box.add_issue(repo, solution.title, solution.body, labels=())
    box.github.add_labels(repo, number, ["ready-for-dev"])
    claim = IssueRef(repo, number).claim_key
    assert wait_for(lambda: bool(client.exists(claim)), SETTLE_TIMEOUT, interval=0.01), box.workers[0].log()[-4000:]
    assert wait_for(lambda: box.settled(repo, [number]), SETTLE_TIMEOUT), box.workers[0].log()[-4000:]
    [pull] = [p for p in box.github.pulls(repo) if p.head == f"ai-feature/issue-{number}"]
    return number, pull.number


def replies(box: Sandbox, repo: str, pull: int) -> list[str]:
    return [c for c in box.github.issue(repo, pull).comments if read_marks(c)]


def test_a_label_becomes_a_claimed_run_and_a_pull_request_through_the_webhook(
        fleet: tuple[Sandbox, str], client: redis.Redis) -> None:
    box, _ = fleet
    repo = "acme/labelled"
    number, pull = labelled_into_a_pull(box, client, repo)
    [labelled] = [d for d in deliveries(box, repo, "issues") if d.action == "labeled"
                  and d.answer.startswith("queued")]
    assert labelled.status == 202 and labelled.answer.startswith(f"queued {repo}#{number} as ")
    assert box.github.issue(repo, number).labels == ("in-review",)
    later = [d for d in deliveries(box, repo, "issues") if d.sent_at > labelled.sent_at and d.action == "labeled"]
    assert later and all(d.answer.startswith("ignored") for d in later), "asm's own labels ask for nothing"
    assert box.github.pulls(repo)[0].number == pull


def test_a_trusted_mention_on_asms_pull_request_becomes_a_reply_through_the_webhook(
        fleet: tuple[Sandbox, str], client: redis.Redis) -> None:
    box, _ = fleet
    repo = "acme/talked"
    _, pull = labelled_into_a_pull(box, client, repo)
    box.github.add_comment(repo, pull, "@asm please say in the docstring what this returns", author=REVIEWER)
    assert wait_for(lambda: len(replies(box, repo, pull)) == 1, SETTLE_TIMEOUT), box.workers[0].log()[-4000:]
    assert wait_for(lambda: not client.exists(IssueRef(repo, pull).claim_key), SETTLE_TIMEOUT)
    told = [d for d in deliveries(box, repo, "issue_comment") if d.answer.endswith(f"looking at {repo}#{pull}")]
    assert told and told[0].status == 202
    [reply] = replies(box, repo, pull)
    assert "@maintainer" in reply


def test_an_unsigned_or_wrongly_signed_mention_does_nothing_and_the_signed_one_does(
        fleet: tuple[Sandbox, str], client: redis.Redis) -> None:
    box, url = fleet
    repo = "acme/unsigned"
    _, pull = labelled_into_a_pull(box, client, repo)
    signed = hooks(box).hooks[0]
    assert signed.secret == SECRET
    hooks(box).remove(signed)
    forged = [hooks(box).add(url + "/webhook", "a guess"), hooks(box).add(url + "/webhook", "")]
    try:
        box.github.add_comment(repo, pull, "@asm please say in the docstring what this returns", author=REVIEWER)
        said = [d for d in deliveries(box, repo, "issue_comment") if d.hook_id in {h.id for h in forged}]
        assert [d.status for d in said] == [401, 401]
        time.sleep(2)  # a moment in which anything queued would have started
        pulled = IssueRef(repo, pull)
        assert not client.hexists(QUEUED, pulled.key) and not client.exists(looking_key(pulled))
        assert not client.exists(pulled.claim_key) and replies(box, repo, pull) == []
    finally:
        for hook in forged:
            hooks(box).remove(hook)
        hooks(box).add(signed.url, SECRET)

    # The same news, signed: the pull request did ask, and only the signature was missing.
    body = json.dumps({"action": "created", "issue": {"number": pull, "state": "open", "labels": [],
                                                      "pull_request": {"url": f"{url}/{repo}/pulls/{pull}"}},
                       "comment": {"body": "@asm"}, "repository": {"full_name": repo}}).encode()
    answer = requests.post(url + "/webhook", data=body, timeout=15, headers={
        "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(SECRET, body), "Content-Type": "application/json"})
    assert answer.status_code == 202, answer.text
    assert wait_for(lambda: len(replies(box, repo, pull)) == 1, SETTLE_TIMEOUT), box.workers[0].log()[-4000:]
