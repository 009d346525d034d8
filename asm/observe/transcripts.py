"""Every run's conversations, in Redis, where the whole fleet and `asm transcript` can read them.

An issue keeps an index of its runs (`transcripts_key`: the next run's number, and per run its label, worker
and start), and each run one hash of its steps' conversations (`transcript_key`: a field per step holding
the role, round, model, system prompt and messages as zlib-compressed JSON). A step's conversation is stored
again after every turn, so a worker killed mid-run leaves what it had. Everything is redacted of asm's secrets
(every encoding `asm.guard.redaction` knows) before it leaves the process, and kept 30 days from its last write.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from asm.agents.loop import SaveConversation
from asm.guard.redaction import Secrets
from asm.keys import IssueRef, transcript_key, transcripts_key

TRANSCRIPT_TTL = 30 * 24 * 3600
# One step's conversation, compressed, at most. A role's 50 turns of cut tool output (16k characters at most
# each) and replies compress to well under half of it; past it, the stored copy leaves out the oldest tool
# results' content, then the oldest turns after the first (the task), and says so in `left_out`.
MAX_CONVERSATION_BYTES = 2 * 1024 * 1024
# When a conversation is over the bound, aim this far under it, so that one more pass is rarely needed.
SHRINK_AIM = 0.8
LEFT_OUT_NOTE = "[left out of the stored transcript: the conversation passed the size one step keeps]"


@dataclass(frozen=True)
class RunRecord:
    """One run of an issue, as its index keeps it."""

    run: str  # "1", "2", ...: the issue's runs in the order they started
    label: str  # what kind of run: "first run", "follow-up on #12: review", "CI fix on #12"
    worker: str
    started_at: float  # unix time


@dataclass(frozen=True)
class Conversation:
    """One step of a run: its role's whole conversation, as stored."""

    step: int
    role: str
    revision: int
    model: str
    system: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    left_out: str = ""  # what the stored copy left out to stay under MAX_CONVERSATION_BYTES, if anything


class Transcripts:
    """The fleet's transcripts: runs start theirs here (`start`), `asm transcript` reads them."""

    def __init__(self, client: redis.Redis[bytes], secrets: Iterable[str]) -> None:
        self.client = client
        self.secrets = Secrets(secrets)  # compiled once: every save of every turn goes through it

    def start(self, issue: IssueRef, label: str, worker: str) -> RunTranscript:
        """A new run of the issue, listed in its index; hand it to the Team, which keeps each step in it."""
        run = str(self.client.hincrby(transcripts_key(issue), "next", 1))
        record = {"label": label, "worker": worker, "started_at": time.time()}
        with self.client.pipeline() as pipe:
            pipe.hset(transcripts_key(issue), f"run:{run}", json.dumps(record))
            pipe.expire(transcripts_key(issue), TRANSCRIPT_TTL)
            pipe.execute()
        return RunTranscript(self.client, issue, run, self.secrets)

    def runs(self, issue: IssueRef) -> list[RunRecord]:
        """The issue's runs still listed, oldest first."""
        index = self.client.hgetall(transcripts_key(issue))
        records = []
        for name, value in index.items():
            kind, _, run = name.decode().partition(":")
            if kind == "run":
                record = json.loads(value)
                records.append(RunRecord(run, record["label"], record["worker"], float(record["started_at"])))
        return sorted(records, key=lambda record: int(record.run))

    def conversations(self, issue: IssueRef, run: str) -> list[Conversation]:
        """A run's conversations, step by step; none once they expired (or before the first turn)."""
        stored = self.client.hgetall(transcript_key(issue, run))
        return [unpack(stored[name]) for name in sorted(stored)]


class RunTranscript:
    """One run's conversations, each step's stored again after every turn (what a Team is handed)."""

    def __init__(self, client: redis.Redis[bytes], issue: IssueRef, run: str, secrets: Secrets) -> None:
        self.client = client
        self.issue = issue
        self.run = run
        self.secrets = secrets
        self.steps = 0

    def conversation(self, role: str, revision: int, model: str) -> SaveConversation:
        """A place for the run's next step: saving there replaces what that step kept before."""
        self.steps += 1
        step = self.steps

        def save(system: str, messages: Sequence[Mapping[str, Any]]) -> None:
            about = {"step": step, "role": role, "revision": revision, "model": model}
            text = self.secrets.redact(json.dumps({**about, "system": system, "messages": messages}, default=str))
            key = transcript_key(self.issue, self.run)
            with self.client.pipeline() as pipe:
                pipe.hset(key, f"{step:03d}", pack(text))
                pipe.expire(key, TRANSCRIPT_TTL)
                pipe.expire(transcripts_key(self.issue), TRANSCRIPT_TTL)
                pipe.execute()

        return save


def pack(text: str, limit: int = MAX_CONVERSATION_BYTES) -> bytes:
    """A conversation's JSON as stored: compressed, and at most `limit` bytes (see MAX_CONVERSATION_BYTES)."""
    data = zlib.compress(text.encode())
    if len(data) <= limit:
        return data
    conversation = json.loads(text)
    messages = conversation["messages"]
    results = [block for message in messages[1:-1] if isinstance(message["content"], list)
               for block in message["content"] if isinstance(block, dict) and block.get("type") == "tool_result"]
    characters = turns = 0
    while len(data) > limit and (results or len(messages) > 2):
        raw = len(text)
        cut = raw - raw * limit / len(data) * SHRINK_AIM  # characters to drop, at the compression seen so far
        while cut > 0 and results:
            block = results.pop(0)
            size = len(json.dumps(block.get("content", "")))
            block["content"] = LEFT_OUT_NOTE
            characters += size
            cut -= size
        while cut > 0 and not results and len(messages) > 2:
            cut -= len(json.dumps(messages.pop(1)))
            turns += 1
        conversation["left_out"] = (f"{characters:,} characters of the oldest tool results and {turns} turns after "
                                    f"the first were not kept: the conversation passed {limit:,} bytes compressed")
        text = json.dumps(conversation)
        data = zlib.compress(text.encode())
    return data


def unpack(data: bytes) -> Conversation:
    stored = json.loads(zlib.decompress(data))
    return Conversation(int(stored["step"]), str(stored["role"]), int(stored["revision"]), str(stored["model"]),
                        str(stored["system"]), list(stored["messages"]), str(stored.get("left_out", "")))
