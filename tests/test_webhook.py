"""`asm webhook`, attacked over HTTP as a real process, with GitHub's documented payloads.

The payloads are `@octokit/webhooks-examples`' own (tests/fixtures/octokit_webhook_payloads.json), adapted to
the sandbox's repository. No worker runs here: what a delivery queued is read from Redis (the queued
marker, the broker's queue). tests/test_webhook_fleet.py has deliveries become runs.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from asm.keys import PAUSED, QUEUED, IssueRef
from asm.sandbox.fleet import CeleryProcess, Sandbox, wait_for
from asm.sandbox.redis_server import RedisServer
from asm.webhook.events import Target, Told, Unreadable, read
from asm.webhook.intake import delivery_key, looking_key
from asm.webhook.server import MAX_AT_ONCE, MAX_BODY_BYTES
from asm.webhook.signature import sign, verify

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "octokit_webhook_payloads.json"
EXAMPLES = json.loads(FIXTURES.read_text())["payloads"]
SECRET = "It's a Secret to Everybody"
REPO, OTHER = "acme/hooked", "acme/elsewhere"
READY = "ready-for-dev"
PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"


def example(event: str, action: str | None = None) -> dict[str, Any]:
    """The first of the package's examples of `event` (with `action`), a copy to change."""
    found = next(e["payload"] for e in EXAMPLES if e["event"] == event and e["payload"].get("action") == action)
    return copy.deepcopy(found)


def adapted(event: str, action: str | None = None, repo: str = REPO, number: int = 1, **changes: Any) -> dict:
    """An example moved to `repo`, its issue or pull request numbered `number`, the pull request on asm's branch."""
    payload = example(event, action)
    owner, name = repo.split("/")
    if "repository" in payload:
        payload["repository"].update(full_name=repo, name=name, url=f"https://api.github.com/repos/{repo}")
        payload["repository"]["owner"]["login"] = owner
    for key in ("issue", "pull_request"):
        if key in payload:
            payload[key]["number"] = number
    if "pull_request" in payload:
        payload["pull_request"]["head"]["ref"] = f"ai-feature/issue-{number - 1 or 1}"
    for kind in ("check_suite", "check_run"):
        for pull in payload.get(kind, {}).get("pull_requests", []):
            pull.update(number=number)
            pull["head"]["ref"] = f"ai-feature/issue-{number - 1 or 1}"
            pull["base"]["repo"]["url"] = f"https://api.github.com/repos/{repo}"
    payload.update(changes)
    return payload


# -- the signature, as GitHub documents it ----------------------------------------------------------------


def test_the_signature_is_githubs_documented_example() -> None:
    # docs.github.com, "Validating webhook deliveries": this secret and body give this signature.
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(SECRET, b"Hello, World!") == expected
    assert verify(SECRET, b"Hello, World!", expected)


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha1=01dc10d0c83e72ed246219cdd91669b2d5ba2b35",
                                    "sha256=" + "0" * 64, sign("another secret", b"Hello, World!"),
                                    sign(SECRET, b"Hello, World?"), sign(SECRET, b"Hello, World!").upper(),
                                    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1\u00e9"])
def test_anything_but_the_exact_signature_is_wrong(header: str | None) -> None:
    assert not verify(SECRET, b"Hello, World!", header)


def test_no_secret_verifies_nothing() -> None:
    assert not verify("", b"{}", sign("", b"{}"))


# -- what each of GitHub's examples tells asm --------------------------------------------------------------


def told(event: str, payload: dict[str, Any]) -> Told:
    return read(event, payload, (REPO,), READY)


def labelled(name: str, **issue: Any) -> dict[str, Any]:
    payload = adapted("issues", "labeled", number=7)
    payload["label"]["name"] = name
    payload["issue"].update(issue)
    return payload


def test_the_ready_label_queues_its_issue_and_nothing_else_does() -> None:
    queued = told("issues", labelled(READY))
    assert queued == Told("queue", (Target(IssueRef(REPO, 7), False),), f"{REPO}#7 labelled {READY}", REPO, ("bug",))
    assert told("issues", labelled("Ready-For-Dev")).kind == "queue", "GitHub's label names ignore case"
    assert told("issues", adapted("issues", "labeled")).kind == "ignore", "the example's own label: bug"
    assert told("issues", labelled(READY, state="closed")).kind == "ignore"
    assert told("issues", labelled(READY, pull_request={"url": "x"})).kind == "ignore"
    for action in ("unlabeled", "opened"):
        assert told("issues", adapted("issues", action)).kind == "ignore", action


def test_a_repository_not_in_asm_repos_is_ignored_whatever_it_says() -> None:
    payload = labelled(READY)
    payload["repository"]["full_name"] = OTHER
    result = told("issues", payload)
    assert result.kind == "ignore" and OTHER in result.why
    assert read("issues", labelled(READY), ("ACME/Hooked",), READY).targets[0].ref.repo == "acme/hooked", \
        "one spelling for every key, however ASM_REPOS or GitHub spells it"
    assert read("issues", payload, None, READY).targets[0].ref.repo == OTHER, \
        "without ASM_REPOS (a GitHub App's webhook), every repository GitHub delivers for"
    payload["repository"]["full_name"] = "../../etc"
    assert read("issues", payload, None, READY).kind == "ignore"


def test_a_comment_on_a_pull_request_or_on_an_issue_waiting_for_answers_asks_for_a_look() -> None:
    on_issue = adapted("issue_comment", "created", number=3)
    assert told("issue_comment", on_issue).kind == "ignore", "the example's issue waits for nothing (label: bug)"
    on_issue["issue"]["labels"].append({"name": "needs-clarification"})
    assert told("issue_comment", on_issue).targets == (Target(IssueRef(REPO, 3), False),)
    on_pull = adapted("issue_comment", "edited", number=4)
    on_pull["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/4"}
    assert told("issue_comment", on_pull).targets == (Target(IssueRef(REPO, 4), True),)
    assert told("issue_comment", adapted("issue_comment", "deleted")).kind == "ignore"
    on_pull["issue"]["state"] = "closed"
    assert told("issue_comment", on_pull).kind == "ignore"


def test_a_review_or_a_review_comment_on_asms_branch_asks_for_a_look() -> None:
    for event, action in (("pull_request_review", "submitted"), ("pull_request_review_comment", "created")):
        payload = adapted(event, action, number=5)
        assert told(event, payload).targets == (Target(IssueRef(REPO, 5), True),), event
        payload["pull_request"]["head"]["ref"] = "changes"  # the example's own branch: a person's
        assert told(event, payload).kind == "ignore", event
    assert told("pull_request_review", adapted("pull_request_review", "dismissed")).kind == "ignore"
    assert told("pull_request_review_comment", adapted("pull_request_review_comment", "edited")).kind == "ignore"


def test_a_finished_check_asks_for_a_look_at_each_pull_request_of_asms_it_names() -> None:
    for event in ("check_suite", "check_run"):
        payload = adapted(event, "completed", number=6)
        assert told(event, payload).targets == (Target(IssueRef(REPO, 6), True),), event
        fork = copy.deepcopy(payload)
        fork[event]["pull_requests"][0]["base"]["repo"]["url"] = "https://api.github.com/repos/someone/fork"
        assert told(event, fork).kind == "ignore", "a pull request of another repository sharing the head"
        payload[event]["pull_requests"] = []
        assert told(event, payload).kind == "ignore"
    assert told("check_suite", adapted("check_suite", "requested")).kind == "ignore"
    assert told("check_run", adapted("check_run", "created")).kind == "ignore"


def test_ping_and_unknown_events() -> None:
    assert told("ping", example("ping")).kind == "pong"
    assert told("ping", example("ping")).kind == "pong"
    assert told("star", adapted("star", "created")).kind == "ignore"
    assert told("", {}).kind == "ignore"


@pytest.mark.parametrize("change", [
    lambda p: p.pop("repository"),
    lambda p: p["repository"].update(full_name=7),
    lambda p: p["issue"].update(number="7"),
    lambda p: p["issue"].update(number=True),
    lambda p: p["issue"].update(number=0),
    lambda p: p.update(issue=[]),
    lambda p: p["label"].pop("name"),
])
def test_a_payload_not_shaped_like_githubs_is_unreadable(change: Any) -> None:
    payload = labelled(READY)
    change(payload)
    with pytest.raises(Unreadable):
        told("issues", payload)


# -- a real `asm webhook`, attacked -------------------------------------------------------------------------


@dataclass
class Webhook:
    box: Sandbox
    url: str
    process: CeleryProcess
    redis: redis.Redis

    def post(self, event: str, payload: dict[str, Any] | bytes, secret: str | None = SECRET,
             delivery: str | None = None, **headers: str) -> requests.Response:
        """A delivery as GitHub sends it: signed with `secret` (None: unsigned), a fresh id unless given."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {"Content-Type": "application/json", "X-GitHub-Event": event, "User-Agent": "GitHub-Hookshot/test",
                "X-GitHub-Delivery": str(uuid.uuid4()) if delivery is None else delivery, **headers}
        if secret is not None:
            sent["X-Hub-Signature-256"] = sign(secret, body)
        return requests.post(self.url + "/webhook", data=body, headers=sent, timeout=15)

    def queued(self) -> dict[bytes, bytes]:
        return self.redis.hgetall(QUEUED)

    def messages(self) -> list[dict[str, Any]]:
        """The task messages waiting in the broker's queues (one a priority, on Redis)."""
        return [json.loads(raw) for queue in self.redis.scan_iter("celery*") for raw in self.redis.lrange(queue, 0, -1)]


@pytest.fixture(scope="module")
def webhook(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    box = Sandbox(tmp_path_factory.mktemp("webhook"), model_latency=0.0, redis_url=redis_server.url).start()
    try:
        box.create_repo(REPO)
        process, url = box.start_webhook(SECRET)
        yield Webhook(box, url, process, client)
    finally:
        box.stop()


@pytest.fixture
def hook(webhook: Webhook) -> Iterator[Webhook]:
    """The module's webhook server, with nothing of asm's in Redis (the broker's own keys are kept)."""
    def clean() -> None:
        for pattern in ("asm:*", "celery*"):
            for key in webhook.redis.scan_iter(pattern):
                webhook.redis.delete(key)

    clean()
    yield webhook
    clean()


def test_a_signed_label_is_queued_once_and_a_replayed_delivery_is_a_duplicate(hook: Webhook) -> None:
    delivery = str(uuid.uuid4())
    answer = hook.post("issues", labelled(READY), delivery=delivery)
    assert answer.status_code == 202 and answer.text.startswith(f"queued {REPO}#7 as "), answer.text
    assert list(hook.queued()) == [f"{REPO}#7".encode()]
    [message] = hook.messages()
    assert message["headers"]["task"] == "asm.process_issue" and message["headers"]["argsrepr"] == f"['{REPO}', 7]"
    assert json.loads(hook.queued()[f"{REPO}#7".encode()])["by"] == "webhook (labeled)"

    again = hook.post("issues", labelled(READY), delivery=delivery)
    assert (again.status_code, again.text) == (200, "duplicate\n")
    assert 0 < hook.redis.ttl(delivery_key(delivery)) <= 3 * 24 * 3600
    fresh = hook.post("issues", labelled(READY))
    assert (fresh.status_code, fresh.text) == (202, f"{REPO}#7 is already queued or running\n")
    assert len(hook.messages()) == 1, "the queue's own de-duplication holds for webhooks too"


@pytest.mark.parametrize("secret, headers", [
    (None, {}),
    ("not the secret", {}),
    (None, {"X-Hub-Signature-256": "sha256=" + "0" * 64}),
    (None, {"X-Hub-Signature": "sha1=" + "0" * 40}),  # GitHub's older header alone is not enough
    (None, {"X-Hub-Signature-256": "garbage \u00e9"}),
])
def test_an_unsigned_or_wrongly_signed_delivery_gets_401_and_nothing_else(
        hook: Webhook, secret: str | None, headers: dict[str, str]) -> None:
    marker = f"marker-{uuid.uuid4()}"
    payload = labelled(READY, title=marker)
    delivery = str(uuid.uuid4())
    answer = hook.post("issues", payload, secret=secret, delivery=delivery, **headers)
    assert answer.status_code == 401
    assert hook.queued() == {} and hook.messages() == []
    assert not hook.redis.exists(delivery_key(delivery)), "an unsigned delivery cannot use up an id"
    assert marker not in hook.process.log(), "nothing of an unsigned body is logged"
    assert hook.post("issues", payload, delivery=delivery).status_code == 202, "the id is still GitHub's to use"


def test_a_body_changed_after_signing_is_refused(hook: Webhook) -> None:
    body = json.dumps(labelled(READY)).encode()
    forged = body.replace(b'"number": 7', b'"number": 8')
    assert forged != body
    answer = requests.post(hook.url + "/webhook", data=forged, timeout=15, headers={
        "X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(SECRET, body)})
    assert answer.status_code == 401 and hook.queued() == {}


def test_malformed_json_and_payloads_not_like_githubs_get_400_and_are_not_remembered(hook: Webhook) -> None:
    for body in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"[" * 100_000):
        delivery = str(uuid.uuid4())
        answer = hook.post("issues", body, delivery=delivery)
        assert answer.status_code == 400, body[:20]
        assert not hook.redis.exists(delivery_key(delivery))
    unreadable = labelled(READY)
    unreadable["issue"]["number"] = "7; DROP"
    answer = hook.post("issues", unreadable)
    assert answer.status_code == 400 and "the issues payload is not shaped as GitHub shapes it" in answer.text
    assert hook.post("issues", json.dumps(labelled(READY)).encode(), delivery="").status_code == 400, "no id"
    assert hook.post("issues", labelled(READY), delivery="../../etc").status_code == 400
    assert hook.queued() == {} and hook.messages() == []


def test_ping_unknown_events_and_other_repositories_are_answered_and_ignored(hook: Webhook) -> None:
    for payload in (example("ping"), example("ping")):
        pong = hook.post("ping", payload)
        assert (pong.status_code, pong.text) == (200, "pong\n")
    star = hook.post("star", adapted("star", "created"))
    assert star.status_code == 202 and star.text.startswith("ignored: star is not an event asm acts on")
    elsewhere = hook.post("issues", {**labelled(READY), "repository": {"full_name": OTHER}})
    assert elsewhere.status_code == 202 and f"{OTHER} is not in ASM_REPOS" in elsewhere.text
    assert f"{OTHER} is not in ASM_REPOS" in hook.process.log(), "said in the log"
    assert hook.queued() == {} and hook.messages() == []


def test_a_form_encoded_delivery_is_read_as_github_sends_it(hook: Webhook) -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps(labelled(READY))}).encode()
    answer = hook.post("issues", body, **{"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 202 and list(hook.queued()) == [f"{REPO}#7".encode()]


def test_a_priority_label_on_the_labelled_issue_gives_its_run_that_priority(hook: Webhook) -> None:
    payload = labelled(READY)
    payload["issue"]["labels"].append({"name": "priority:high"})
    assert hook.post("issues", payload).status_code == 202
    assert json.loads(hook.queued()[f"{REPO}#7".encode()])["priority"] == "high"


def test_a_priority_label_put_on_an_issue_already_waiting_moves_it_up(hook: Webhook) -> None:
    assert hook.post("issues", labelled(READY)).status_code == 202
    assert json.loads(hook.queued()[f"{REPO}#7".encode()])["priority"] == "normal"
    bumped = labelled("priority:high")  # GitHub's delivery for the second label: the issue carries both
    bumped["issue"]["labels"] += [{"name": READY}, {"name": "priority:high"}]
    assert hook.post("issues", bumped).status_code == 202
    assert json.loads(hook.queued()[f"{REPO}#7".encode()])["priority"] == "high"
    assert told("issues", labelled("priority:high")).kind == "ignore", "not labelled ready: nothing to move"


def test_comments_reviews_and_checks_become_one_look_in_a_task_never_in_the_request(hook: Webhook) -> None:
    deliveries = [("pull_request_review", adapted("pull_request_review", "submitted", number=5)),
                  ("pull_request_review_comment", adapted("pull_request_review_comment", "created", number=5)),
                  ("check_run", adapted("check_run", "completed", number=5)),
                  ("check_suite", adapted("check_suite", "completed", number=5))]
    requests_before = hook.box.github.request_count
    answers = [hook.post(event, payload) for event, payload in deliveries]
    assert [a.status_code for a in answers] == [202] * 4
    assert answers[0].text == f"a review on pull request {REPO}#5: looking at {REPO}#5\n"
    assert all(a.text.endswith(": a look is already queued\n") for a in answers[1:]), [a.text for a in answers]
    [message] = hook.messages()
    assert message["headers"]["task"] == "asm.consider" and message["headers"]["argsrepr"] == f"['{REPO}', 5, True]"
    assert hook.redis.exists(looking_key(IssueRef(REPO, 5)))
    assert hook.box.github.request_count == requests_before, "no GitHub request while GitHub waits"
    assert hook.queued() == {}


def test_senders_trickling_small_bodies_are_cut_off_and_githubs_delivery_gets_through(hook: Webhook) -> None:
    host, _, port = hook.url.removeprefix("http://").partition(":")
    body = json.dumps(labelled(READY)).encode()
    head = (f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-GitHub-Event: issues\r\n"
            f"X-GitHub-Delivery: {uuid.uuid4()}\r\nX-Hub-Signature-256: {sign(SECRET, body)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    slow = [socket.create_connection((host, int(port)), timeout=15) for _ in range(MAX_AT_ONCE)]
    try:
        for sender in slow:
            sender.sendall(head + body[:10])  # and then nothing: every place is taken
        # Each is answered in a few seconds (its size at GitHub's pace, and a little), not the 20 s of a
        # 25 MB body: the socket's timeout is only how long this test waits for the answer.
        answers = [sender.recv(200) for sender in slow]
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers
    finally:
        for sender in slow:
            sender.close()
    assert hook.post("issues", labelled(READY)).status_code == 202


def test_a_paused_fleet_queues_nothing_and_the_scan_finds_it_later(hook: Webhook) -> None:
    hook.redis.set(PAUSED, "the model account has no credit")
    answer = hook.post("issues", labelled(READY))
    assert answer.status_code == 202 and answer.text.startswith("not queued: the fleet is paused")
    assert hook.queued() == {} and hook.messages() == []


def raw_request(url: str, head: str, timeout: float = 5.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=timeout)
    connection.sendall(head.encode("latin-1"))
    return connection


def read_answer(connection: socket.socket) -> bytes:
    """One HTTP answer, whole: its head and as much body as it says it has."""
    answer = b""
    while True:
        head, blank, body = answer.partition(b"\r\n\r\n")
        if blank:
            lengths = [line.split(b":")[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")]
            if len(body) >= int(lengths[0] if lengths else 0):
                return answer
        part = connection.recv(4096)
        if not part:
            return answer
        answer += part


def test_a_body_over_25_mb_gets_413_before_it_is_read(hook: Webhook) -> None:
    size = MAX_BODY_BYTES + 1
    connection = raw_request(hook.url, "POST /webhook HTTP/1.1\r\nHost: asm\r\nX-GitHub-Event: issues\r\n"
                                       f"X-GitHub-Delivery: {uuid.uuid4()}\r\nContent-Type: application/json\r\n"
                                       f"Content-Length: {size}\r\n\r\n")
    with connection:
        answer = read_answer(connection)  # before a byte of the body is sent
        assert answer.startswith(b"HTTP/1.1 413 ") and b"at most 25 MB" in answer, answer
        # Streamed from one small buffer, never built: the server stops taking it long before 25 MB.
        chunk, sent = memoryview(b"x" * 65536), 0
        with pytest.raises(OSError):
            while sent < size:
                sent += connection.send(chunk)
        assert sent < size
    assert requests.get(hook.url + "/healthz", timeout=5).status_code == 200


def test_a_chunked_body_or_none_is_refused(hook: Webhook) -> None:
    with raw_request(hook.url, "POST /webhook HTTP/1.1\r\nHost: asm\r\nTransfer-Encoding: chunked\r\n\r\n") as c:
        assert read_answer(c).startswith(b"HTTP/1.1 411 ")
    for length in ("-1", "\u00b2", "1e3", ""):
        with raw_request(hook.url, f"POST /webhook HTTP/1.1\r\nHost: asm\r\nContent-Length: {length}\r\n\r\n") as c:
            assert read_answer(c).startswith(b"HTTP/1.1 411 "), length


def test_health_and_other_paths(hook: Webhook) -> None:
    assert requests.get(hook.url + "/healthz", timeout=5).text == "ok\n"
    assert requests.get(hook.url + "/webhook", timeout=5).status_code == 404
    assert requests.post(hook.url + "/elsewhere", data=b"{}", timeout=5).status_code == 404
    assert requests.put(hook.url + "/webhook", data=b"{}", timeout=5).status_code == 501


def test_without_a_secret_it_refuses_to_start_in_one_line(webhook: Webhook) -> None:
    env = webhook.box.process_env(ASM_WEBHOOK_SECRET="")
    done = subprocess.run([sys.executable, "-m", "asm", "webhook", "--port", "0"], env=env,
                          cwd=webhook.box.root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "asm: ASM_WEBHOOK_SECRET is not set: it is how asm tells GitHub's deliveries from anyone's"]
    bad_port = subprocess.run([sys.executable, "-m", "asm", "webhook", "--port", "99999"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert bad_port.returncode == 2 and len(bad_port.stderr.strip().splitlines()) == 1


def test_the_procfiles_webhook_line_runs_without_the_tokens_and_stops_on_sigterm(webhook: Webhook) -> None:
    [line] = [line for line in PROCFILE.read_text().splitlines() if line.startswith("webhook:")]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = line.partition(":")[2].strip().replace("--port=8000", f"--port={port}").replace(
        "asm webhook", f"{sys.executable} -m asm webhook")
    app_key = "-----BEGIN PRIVATE KEY-----\nnot-a-real-key-but-secret\n-----END PRIVATE KEY-----\n"
    env = webhook.box.process_env(ASM_WEBHOOK_SECRET=SECRET, ASM_GITHUB_APP_ID="4711",
                                  ASM_GITHUB_APP_PRIVATE_KEY=app_key)
    shell = subprocess.Popen(["sh", "-c", f"exec {command}"], env=env, cwd=webhook.box.root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return requests.get(url + "/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        assert wait_for(healthy, 60)
        environ = Path(f"/proc/{shell.pid}/environ").read_bytes()
        assert webhook.box.github_token.encode() not in environ and webhook.box.api_key.encode() not in environ
        assert b"not-a-real-key-but-secret" not in environ and b"ASM_GITHUB_APP_ID=4711" not in environ
        shell.send_signal(signal.SIGTERM)
        assert shell.wait(timeout=30) == 0
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()
