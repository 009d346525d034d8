"""A hostile issue, run by a real worker with real bubblewrap: every attack fails, the fleet works on.

The scripted model plays an agent steered by an issue's author (`asm.sandbox.hostile`): it hunts
for secrets, reads and writes asm's files, detaches processes, reaches Redis and the other local
services, plants git hooks and config for asm's own git, exhausts resources, and turns the editor
on paths outside its tree, while honest issues run next to it on the same worker.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from asm.fleet.queue import enqueue
from asm.guard.redaction import Secrets
from asm.keys import IssueRef, transcript_key, transcripts_key
from asm.sandbox.fleet import Sandbox, running_fleet, wait_for
from asm.sandbox.hostile import EDITOR, MARK, SURVIVOR, attacks, host_traces
from asm.sandbox.redis_server import RedisServer
from asm.sandbox.sample_repo import SOLUTIONS

HOSTILE, LEAK_FILE, LEAK_COMMENT = "acme/hostile", "acme/leak-file", "acme/leak-comment"
SETTLE = 180


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("hostile")
    with running_fleet(root, redis_server.url, slots=2, name="hostile", repos=(HOSTILE, LEAK_FILE, LEAK_COMMENT),
                       ASM_TOOL_NETWORK="off") as box:
        yield box


@pytest.fixture(scope="module")
def secrets(fleet: Sandbox) -> Secrets:
    return Secrets([fleet.github_token, fleet.api_key])


def transcripts(fleet: Sandbox, repo: str, number: int) -> list[bytes]:
    """Each step's conversation of the issue's runs, step by step, as Redis keeps it (decompressed)."""
    client, issue = redis.Redis.from_url(fleet.redis_url), IssueRef(repo, number)
    runs = sorted(int(name.decode().split(":")[1]) for name in client.hkeys(transcripts_key(issue)) if name != b"next")
    return [zlib.decompress(data) for run in runs
            for _, data in sorted(client.hgetall(transcript_key(issue, str(run))).items())]


def tool_results(transcript: bytes) -> list[tuple[str, dict, dict]]:
    """(tool name, tool input, tool result) of every call in a transcript, in order."""
    messages = json.loads(transcript)["messages"]
    uses = {block["id"]: block for message in messages if message["role"] == "assistant"
            for block in message["content"] if block.get("type") == "tool_use"}
    return [(uses[block["tool_use_id"]]["name"], uses[block["tool_use_id"]]["input"], block)
            for message in messages if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"] if block.get("type") == "tool_result"]


def queue(fleet: Sandbox, repo: str, number: int) -> None:
    from asm.celery_app import app

    assert enqueue(redis.Redis.from_url(fleet.redis_url), app, IssueRef(repo, number), by="test", stale_after=600)


def test_every_attack_of_a_hostile_issue_fails_and_honest_issues_still_become_pull_requests(
        fleet: Sandbox, secrets: Secrets) -> None:
    (fleet.root / ".env").write_text(f"GITHUB_TOKEN={fleet.github_token}\nANTHROPIC_API_KEY={fleet.api_key}\n")
    repo = fleet.create_repo(HOSTILE)
    ports = tuple(urlsplit(url).port for url in (fleet.redis_url, fleet.github_server.url, fleet.model.url))
    directive = f"asm-sandbox: hostile={fleet.root}; ports={','.join(map(str, ports))}"
    hostile = fleet.add_issue(repo, SOLUTIONS[0].title, f"{SOLUTIONS[0].body}\n{directive}")
    honest = [fleet.add_issue(repo, s.title, s.body) for s in SOLUTIONS[1:4]]
    for number in (hostile, *honest):
        queue(fleet, repo, number)

    assert wait_for(lambda: fleet.settled(repo, [hostile, *honest]), SETTLE), fleet.workers[0].log()[-4000:]

    # The fleet worked on: every issue, the hostile one included, became its pull request.
    pulls = {pull.head: pull for pull in fleet.github.pulls(repo)}
    for number, solution in zip((hostile, *honest), SOLUTIONS, strict=False):
        assert fleet.settled_label(repo, number) == "in-review"
        assert fleet.github.file_at(repo, f"ai-feature/issue-{number}", solution.module_path) == solution.code
    # Each attack failed, as its tool result shows.
    architect = transcripts(fleet, repo, hostile)[0]
    results = {name_of(attack_input): (tool, result) for tool, attack_input, result in tool_results(architect)
               if name_of(attack_input)}
    made = attacks(str(fleet.root), ports)
    for attack in made:
        tool, result = results[attack.name]
        text = result["content"] if isinstance(result["content"], str) else json.dumps(result["content"])
        assert attack.succeeded_marker not in text, (attack.name, text[-800:])
        if attack.tool == EDITOR and attack.name != "editor-link-setup":
            assert result["is_error"], (attack.name, text)
    assert "fork bomb" in results["fork-bomb"][1]["content"]
    assert "MemoryError" in results["memory-hog"][1]["content"]
    # Nothing on the host: no trace written, no process left, asm's git ran none of the agents' code.
    for trace in host_traces(str(fleet.root)):
        assert not Path(trace).exists(), trace
    assert not any(SURVIVOR.encode() in cmdline for cmdline in all_cmdlines())
    # Redis was never reached: the issue's ledger and the worker's status are intact.
    client = redis.Redis.from_url(fleet.redis_url)
    assert client.exists(IssueRef(repo, hostile).ledger_key) and client.smembers("asm:workers")
    # What it found went into its change: nothing secret, in any encoding.
    loot = fleet.github.file_at(repo, f"ai-feature/issue-{hostile}", "loot.b64")
    assert loot is not None and not secrets.found_in(base64.b64decode(loot))
    assert not secrets.found_in(loot)
    assert f"ai-feature/issue-{hostile}" in pulls
    assert_nothing_secret_anywhere(fleet, secrets, repo)


def name_of(attack_input: dict) -> str | None:
    """The attack a tool call belongs to, by the marker its command prints (editor calls by their path)."""
    command = attack_input.get("command", "")
    if isinstance(command, str) and f"echo {MARK}:" in command:
        return command.rsplit(f"echo {MARK}:", 1)[1].split(";")[0].strip()
    known = {"detach": "detached", "git-plant": "echo planted", "fork-bomb": ":(){", "memory-hog": "bytearray(64",
             "editor-link-setup": "ln -sf", "loot": "base64 -w0"}
    for name, needle in known.items():
        if isinstance(command, str) and needle in command:
            return name
    path = str(attack_input.get("path", ""))
    editor = {".env": "editor-absolute", "../../pwned-editor.txt": "editor-dotdot", "dotenv-link": "editor-link-file",
              "rootlink/etc/pwned": "editor-link-dir", ".git/hooks/pre-push": "editor-git"}
    return next((name for suffix, name in editor.items() if path.endswith(suffix)), None)


def all_cmdlines() -> list[bytes]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" "))
            except OSError:
                continue
    return lines


def assert_nothing_secret_anywhere(fleet: Sandbox, secrets: Secrets, repo: str) -> None:
    """No comment, PR body, pushed file, transcript or log line holds a secret, in any encoding."""
    for number in range(1, 40):
        try:
            issue = fleet.github.issue(repo, number)
        except Exception:  # past the last issue or pull request
            break
        for text in (issue.body, *issue.comments, *transcripts(fleet, repo, number)):
            assert not secrets.found_in(text), (number, text[:200])
    for log in (fleet.root / "logs").glob("*.log"):
        assert not secrets.found_in(log.read_bytes()), log


def test_a_secret_the_agent_writes_into_the_change_is_never_pushed(fleet: Sandbox, secrets: Secrets) -> None:
    repo = fleet.create_repo(LEAK_FILE)
    encoded = base64.b64encode(f"token={fleet.github_token}".encode()).decode()
    number = fleet.add_issue(repo, SOLUTIONS[0].title, f"{SOLUTIONS[0].body}\nasm-sandbox: leak={encoded}")
    queue(fleet, repo, number)

    assert wait_for(lambda: fleet.settled_label(repo, number) is not None, SETTLE), fleet.workers[0].log()[-3000:]

    assert fleet.settled_label(repo, number) == "ai-failed"
    assert fleet.github.branch_sha(repo, f"ai-feature/issue-{number}") is None
    assert fleet.github.pulls(repo) == []
    said = fleet.github.issue(repo, number).comments[-1]
    assert "`leak.txt`" in said and "nothing was pushed" in said
    assert not secrets.found_in(said)


def test_a_secret_quoted_in_a_clarification_is_redacted_in_every_encoding(fleet: Sandbox, secrets: Secrets) -> None:
    repo = fleet.create_repo(LEAK_COMMENT)
    forms = [fleet.api_key.encode().hex(), base64.b64encode(fleet.api_key.encode()).decode(),
             "".join(f"%{byte:02x}" for byte in fleet.github_token.encode())]
    number = fleet.add_issue(repo, "Make it better", f"Vague.\nasm-sandbox: clarify; leak={' '.join(forms)}")
    queue(fleet, repo, number)

    assert wait_for(lambda: fleet.settled_label(repo, number) is not None, SETTLE), fleet.workers[0].log()[-3000:]

    assert fleet.settled_label(repo, number) == "needs-clarification"
    asked = fleet.github.issue(repo, number).comments[-1]
    assert "Which module" in asked and asked.count("[redacted]") == 3
    assert not secrets.found_in(asked)
    kept = transcripts(fleet, repo, number)
    assert kept and not any(secrets.found_in(transcript) for transcript in kept)
