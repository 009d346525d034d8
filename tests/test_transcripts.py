"""Transcripts in Redis and `asm transcript`: real runs worked in this process on the sandbox, read back through
the command as a person runs it (a process, with nothing but the settings' environment)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import zlib

import pytest
import redis

from asm.guard.redaction import Secrets
from asm.keys import IssueRef, transcript_key, transcripts_key
from asm.observe.progress import Progress
from asm.observe.transcripts import LEFT_OUT_NOTE, TRANSCRIPT_TTL, Transcripts, pack
from asm.sandbox.fleet import Sandbox
from asm.sandbox.sample_repo import SOLUTIONS, TEST_COMMAND

REPO = "acme/textkit"
TITLES = ("Architect", "Security reviewer", "Tester", "Product Owner")


def transcript(box: Sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m asm transcript ...`, with the sandbox's settings (an empty value unsets a variable)."""
    environment = box.process_env(**env)
    for name, value in env.items():
        if value == "":
            environment.pop(name, None)
    return subprocess.run([sys.executable, "-m", "asm", "transcript", *args], env=environment, capture_output=True,
                          text=True, timeout=60, cwd=box.root)


def stored(box: Sandbox, issue: IssueRef) -> list[bytes]:
    """Every conversation kept of the issue, as Redis holds it (decompressed)."""
    client = redis.Redis.from_url(box.redis_url)
    runs = [name.decode().split(":", 1)[1] for name in client.hkeys(transcripts_key(issue)) if name != b"next"]
    return [zlib.decompress(data) for run in runs for data in client.hvals(transcript_key(issue, run))]


def test_a_run_reads_back_role_by_role_with_no_token_or_key(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    work_issue(REPO, number)

    done = transcript(sandbox, f"{REPO}#{number}", GITHUB_TOKEN="", ANTHROPIC_API_KEY="")

    assert done.returncode == 0 and done.stderr == "", done.stderr
    text = done.stdout
    assert text.startswith(f"{REPO}#{number} · run 1 of 1 · first run · worker here-1 · started ")
    headings = [f"=== {step}. {title}, round 1, claude-sonnet-5-5 ===" for step, title in enumerate(TITLES, 1)]
    assert [text.index(heading) for heading in headings] == sorted(text.index(heading) for heading in headings)
    assert f"Title: {SOLUTIONS[0].title}" in text  # the task, whole
    assert f"> bash: $ {TEST_COMMAND}" in text and "< bash:\n" in text and "Ran 4 tests" in text
    assert f"  file_text:\n{SOLUTIONS[0].code}" in text  # the editor's input, as the file it writes
    assert '> submit_decision: {"decision": "APPROVE", "feedback": "Resolves the issue; tests pass."}' in text
    assert text.count("[system prompt: ") == 4


def test_all_runs_are_kept_and_each_can_be_asked_for(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    number = sandbox.add_issue(REPO, SOLUTIONS[1].title, f"{SOLUTIONS[1].body}\nasm-sandbox: po=REJECT")
    work_issue(REPO, number)
    sandbox.github.add_labels(REPO, number, ["ready-for-dev"])  # asked again after the rejection
    work_issue(REPO, number)
    key = f"{REPO}#{number}"

    every, latest, first = (transcript(sandbox, key, *args) for args in (["--all"], [], ["--run", "1"]))

    assert every.returncode == latest.returncode == first.returncode == 0
    assert every.stdout.count(f"{key} · run ") == 2
    assert every.stdout.index(f"{key} · run 1 of 2 · first run") < every.stdout.index(f"{key} · run 2 of 2")
    assert every.stdout.count("=== 1. Architect, round 1") == 2
    assert latest.stdout.startswith(f"{key} · run 2 of 2 · first run") and latest.stdout.count(f"{key} · run ") == 1
    assert first.stdout.startswith(f"{key} · run 1 of 2") and first.stdout.count(f"{key} · run ") == 1
    assert latest.stdout.count('"decision": "REJECT"') == 1


def test_json_gives_every_block_whole(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    work_issue(REPO, number, ASM_MODEL_TESTER="claude-haiku-4-5")

    done = transcript(sandbox, f"{REPO}#{number}", "--json")

    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    [run] = shown["runs"]
    assert shown["issue"] == f"{REPO}#{number}" and (run["run"], run["label"], run["worker"]) == ("1", "first run",
                                                                                                  "here-1")
    assert [(step["step"], step["role"], step["revision"]) for step in run["steps"]] == [
        (n, title, 0) for n, title in enumerate(TITLES, 1)]
    assert [step["model"] for step in run["steps"]] == ["claude-sonnet-5-5", "claude-sonnet-5-5", "claude-haiku-4-5",
                                                        "claude-sonnet-5-5"]
    architect = run["steps"][0]
    assert "You are the Architect" in architect["system"]
    assert architect["messages"][1]["content"][0]["input"] == {"command": "view", "path": "/workspace"}
    assert len(architect["messages"]) == 8  # the task, four replies and the three results between them


def test_what_is_stored_is_redacted_and_expires(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    secrets = Secrets([sandbox.github_token, sandbox.api_key])
    pasted = f"{sandbox.github_token} {base64.b64encode(sandbox.api_key.encode()).decode()}"
    number = sandbox.add_issue(REPO, SOLUTIONS[0].title, f"{SOLUTIONS[0].body}\nPasted by mistake: {pasted}")
    issue = IssueRef(REPO, number)
    work_issue(REPO, number)

    kept = stored(sandbox, issue)

    assert len(kept) == 4
    assert all(not secrets.found_in(data) for data in kept)
    assert all(b"Pasted by mistake: [redacted] [redacted]" in data for data in kept)
    client = redis.Redis.from_url(sandbox.redis_url)
    assert TRANSCRIPT_TTL - 60 < client.ttl(transcript_key(issue, "1")) <= TRANSCRIPT_TTL
    assert TRANSCRIPT_TTL - 60 < client.ttl(transcripts_key(issue)) <= TRANSCRIPT_TTL


class Killed(BaseException):
    """Stands for the worker process dying mid-run."""


def test_a_run_killed_mid_way_leaves_what_it_had(sandbox: Sandbox, work_issue) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)

    def kill_at_the_tester(progress: Progress) -> None:
        if progress.stage == "tester":
            raise Killed

    with pytest.raises(Killed):
        work_issue(REPO, number, on_progress=kill_at_the_tester)

    done = transcript(sandbox, f"{REPO}#{number}")
    assert done.returncode == 0
    assert "=== 1. Architect" in done.stdout and "=== 2. Security reviewer" in done.stdout
    assert "Tester, round" not in done.stdout


def test_bad_input_is_one_line_and_exit_2(sandbox: Sandbox) -> None:
    for args, says in ((["acme/textkit"], "not an issue in owner/name#N form"),
                       (["acme#3"], "not in owner/name form"),
                       (["acme/textkit#x"], "not a positive number"),
                       (["acme/textkit#1", "--run", "1", "--all"], "not allowed with argument")):
        done = transcript(sandbox, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr
        assert done.stdout == "" and "Traceback" not in done.stderr


def test_an_issue_with_no_run_kept_is_one_line_and_exit_1(sandbox: Sandbox, asm_command) -> None:
    nothing = asm_command(sandbox, "transcript", f"{REPO}#7")
    Transcripts(redis.Redis.from_url(sandbox.redis_url), ()).start(IssueRef(REPO, 7), "first run", "here-1")
    missing = asm_command(sandbox, "transcript", f"{REPO}#7", "--run", "5")
    empty = asm_command(sandbox, "transcript", f"{REPO}#7")

    assert (nothing.returncode, nothing.stdout) == (1, "")
    assert nothing.stderr == f"asm: no run of {REPO}#7 is recorded (transcripts are kept 30 days)\n"
    assert (missing.returncode, missing.stderr) == (1, f"asm: {REPO}#7 has no run 5 kept; its runs: 1\n")
    assert empty.returncode == 0 and "(no conversation kept: it expired, or the run stopped before its first turn)" \
        in empty.stdout


def test_a_conversation_past_the_bound_keeps_its_turns_and_leaves_out_the_oldest_tool_results() -> None:
    def turn(n: int) -> list[dict]:
        return [{"role": "assistant", "content": [{"type": "tool_use", "id": f"t{n}", "name": "bash",
                                                   "input": {"command": f"cat part-{n}"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{n}",
                                              "content": os.urandom(6_000).hex()}]}]

    messages = [{"role": "user", "content": [{"type": "text", "text": "the task"}]}]
    messages += [message for n in range(20) for message in turn(n)]
    text = json.dumps({"step": 1, "role": "Tester", "revision": 0, "model": "m", "system": "s", "messages": messages})

    data = pack(text, limit=60_000)

    assert len(zlib.compress(text.encode())) > 120_000 and len(data) <= 60_000
    kept = json.loads(zlib.decompress(data))
    assert "characters of the oldest tool results and 0 turns after the first were not kept" in kept["left_out"]
    assert len(kept["messages"]) == len(messages)  # every turn is there, and what each tool call was
    calls = [m["content"][0]["input"] for m in kept["messages"][1::2]]
    assert calls == [{"command": f"cat part-{n}"} for n in range(20)]
    results = [m["content"][0]["content"] for m in kept["messages"][2::2]]
    assert results[0] == LEFT_OUT_NOTE and results[-1] == messages[-1]["content"][0]["content"]
    assert results.index(LEFT_OUT_NOTE) == 0 and LEFT_OUT_NOTE not in results[results.count(LEFT_OUT_NOTE):]
