"""The sandbox GitHub's webhooks: deliveries shaped, headed and signed like GitHub's, caught by a plain receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from asm.sandbox.fleet import Sandbox
from asm.sandbox.github_state import HUMAN_LOGIN
from asm.sandbox.sample_repo import SOLUTIONS

SECRET = "sandbox hook secret"
REPO = "acme/hooks"
EXAMPLES = json.loads((Path(__file__).resolve().parent / "fixtures" / "octokit_webhook_payloads.json")
                      .read_text())["payloads"]

Caught = tuple[dict[str, str], bytes]


class Receiver(ThreadingHTTPServer):
    """Keeps every request's headers and body; answers 200."""

    def __init__(self) -> None:
        self.caught: list[Caught] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.caught.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def of(self, event: str, action: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(body) for headers, body in self.caught
                if headers["x-github-event"] == event and json.loads(body).get("action") == action]


@pytest.fixture
def hooked(sandbox: Sandbox) -> Iterator[tuple[Sandbox, Receiver]]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    sandbox.create_repo(REPO)
    sandbox.webhooks().add(f"http://127.0.0.1:{receiver.server_address[1]}/hook", SECRET)
    yield sandbox, receiver
    receiver.shutdown()
    receiver.server_close()


def keys_like_githubs(event: str, action: str | None, payload: dict[str, Any]) -> None:
    """The payload's top-level keys are those of GitHub's own example (an App's `installation` aside)."""
    example = next(e["payload"] for e in EXAMPLES if e["event"] == event and e["payload"].get("action") == action)
    optional = {"organization", "installation", "enterprise"}
    assert set(payload) - optional == set(example) - optional, (event, set(payload) ^ set(example))


def test_a_hook_is_pinged_then_hears_labels_and_comments_signed_as_github_signs(
        hooked: tuple[Sandbox, Receiver]) -> None:
    box, receiver = hooked
    number = box.add_issue(REPO, "Something", "body", labels=())
    box.github.add_labels(REPO, number, ["ready-for-dev"])
    box.github.add_comment(REPO, number, "a comment", author=HUMAN_LOGIN)
    box.github.remove_label(REPO, number, "ready-for-dev")
    assert box.hooks is not None and box.hooks.wait_idle()
    events = [(h["x-github-event"], json.loads(b).get("action")) for h, b in receiver.caught]
    assert events == [("ping", None), ("issues", "labeled"), ("issue_comment", "created"), ("issues", "unlabeled")]
    for headers, body in receiver.caught:
        assert headers["x-hub-signature-256"] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["x-hub-signature"] == "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        assert headers["user-agent"].startswith("GitHub-Hookshot/") and headers["content-type"] == "application/json"
        assert len(headers["x-github-delivery"]) == 36
    assert len({h["x-github-delivery"] for h, _ in receiver.caught}) == 4
    [labelled] = receiver.of("issues", "labeled")
    assert labelled["label"]["name"] == "ready-for-dev" and labelled["issue"]["number"] == number
    assert labelled["issue"]["labels"][0]["name"] == "ready-for-dev"
    assert labelled["repository"]["full_name"] == REPO and labelled["sender"]["login"] == HUMAN_LOGIN
    keys_like_githubs("issues", "labeled", labelled)
    [comment] = receiver.of("issue_comment", "created")
    assert comment["comment"]["body"] == "a comment" and "pull_request" not in comment["issue"]
    keys_like_githubs("issue_comment", "created", comment)
    assert [d.status for d in box.hooks.deliveries] == [200] * 4


def test_reviews_and_finished_checks_on_a_pull_request(hooked: tuple[Sandbox, Receiver]) -> None:
    box, receiver = hooked
    github = box.github
    module = SOLUTIONS[0].module_path
    # The branch goes into the bare repository by `git fast-import`: what a push leaves, without its cost.
    stream = (f"commit refs/heads/feature\ncommitter T <t@example.invalid> 1700000000 +0000\ndata 4\nwork\n"
              f"from {github.branch_sha(REPO, 'main')}\nM 100644 inline {module}\ndata 8\nchanged\n\n")
    subprocess.run(["git", "fast-import", "--quiet"], cwd=github.repo(REPO).path, input=stream, text=True, check=True)
    pull = github.create_pull(REPO, "A change", "", "feature", "main").number
    github.add_user("reviewer")
    github.grant(REPO, "reviewer", "write")
    github.submit_review(REPO, pull, "reviewer", "REQUEST_CHANGES", "Please",
                         comments=[{"path": module, "line": 1, "body": "this line"}])
    head = github.branch_sha(REPO, "feature")
    assert head is not None
    lint = github.create_check_run(REPO, head, "lint", status="in_progress")
    github.create_check_run(REPO, head, "tests", conclusion="failure")
    assert receiver.of("check_suite", "completed") == [], "one run of the suite is still going"
    github.update_check_run(REPO, lint, status="completed", conclusion="success")
    assert box.hooks is not None and box.hooks.wait_idle()

    [review] = receiver.of("pull_request_review", "submitted")
    assert review["review"]["state"] == "CHANGES_REQUESTED" and review["pull_request"]["number"] == pull
    assert review["pull_request"]["head"]["ref"] == "feature"
    keys_like_githubs("pull_request_review", "submitted", review)
    [line] = receiver.of("pull_request_review_comment", "created")
    assert line["comment"]["body"] == "this line"
    keys_like_githubs("pull_request_review_comment", "created", line)
    runs = receiver.of("check_run", "completed")
    assert [r["check_run"]["name"] for r in runs] == ["tests", "lint"]
    assert runs[0]["check_run"]["pull_requests"][0]["number"] == pull
    keys_like_githubs("check_run", "completed", runs[0])
    [suite] = receiver.of("check_suite", "completed")
    assert suite["check_suite"]["conclusion"] == "failure" and suite["check_suite"]["head_sha"] == head
    assert suite["check_suite"]["pull_requests"][0]["head"]["ref"] == "feature"
    keys_like_githubs("check_suite", "completed", suite)
    assert receiver.of("issues", "opened") == [] and receiver.of("issues", "labeled") == [], \
        "a pull request is no issue to its hooks"


def test_a_hook_hears_only_its_events_and_a_removed_one_nothing(hooked: tuple[Sandbox, Receiver]) -> None:
    box, receiver = hooked
    assert box.hooks is not None
    [everything] = box.hooks.hooks
    box.hooks.remove(everything)
    box.hooks.add(everything.url, SECRET, events=("issue_comment",))
    number = box.add_issue(REPO, "Labelled at birth", labels=("ready-for-dev",))
    box.github.add_comment(REPO, number, "said", author=HUMAN_LOGIN)
    assert box.hooks.wait_idle()
    assert [h["x-github-event"] for h, _ in receiver.caught] == ["ping", "ping", "issue_comment"]
