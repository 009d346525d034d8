"""The tool-use loop against the scripted model in the Sonnet 5.5 style, through the real `anthropic` client, on a
real git clone of the sample repo: thinking blocks kept as they came, every stop reason, the context guard."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anthropic
import pytest

from asm.agents.editor import EditorTool
from asm.agents.loop import CUT_CALL, CUT_TEXT, TRIM_NOTE, Agent, Completer, as_param, trim_tool_results
from asm.agents.model import ModelClient
from asm.agents.roles import ARCHITECT, TEAM
from asm.agents.team import IssueText, Team, task_text
from asm.agents.tools import BASH_TOOL, EDITOR_TOOL, EDITOR_TOOL_NAME, BashTool, ToolResult, WorkingTree
from asm.agents.workflow import Step, run_workflow
from asm.errors import AsmError, ModelRefused
from asm.guard.jail import SHOWN_ROOT, Jail, prepare
from asm.keys import IssueRef
from asm.observe.transcripts import RunTranscript, Transcripts
from asm.sandbox.model_server import ScriptedModelServer
from asm.sandbox.sample_repo import SOLUTIONS
from asm.spend.cost import MAX_OUTPUT_TOKENS, Usage

MODEL_STYLE = "sonnet-5-5"
MODEL_KEY = KEY = "sk-ant-sandbox-sonnet-agent"
MODEL = "claude-sonnet-5-5"
SLUGIFY = SOLUTIONS[0]
BIG = 20_000  # characters of the first tool result, in the tests that need something to trim


class Meter:
    """Records every call and charge; runs `hooks[n]` just before the n-th call (from 1)."""

    def __init__(self, hooks: Mapping[int, Callable[[], None]] | None = None) -> None:
        self.hooks = dict(hooks or {})
        self.prompt_sizes: list[int] = []
        self.charges: list[Usage] = []

    def before_call(self, prompt_characters: int, max_output_tokens: int, model: str) -> None:
        self.prompt_sizes.append(prompt_characters)
        self.hooks.get(len(self.prompt_sizes), lambda: None)()

    def charge(self, usage: Usage, model: str) -> float:
        self.charges.append(usage)
        return 0.0

    def call_failed(self) -> None:
        pass

    def check(self) -> None:
        pass


class BigView:
    """The editor, except that viewing the root shows a very long listing: something old to trim later."""

    def __init__(self, editor: EditorTool) -> None:
        self.editor = editor

    def __call__(self, tool_input: Mapping[str, Any]) -> ToolResult:
        if tool_input.get("command") == "view":
            return ToolResult("x" * BIG)
        return self.editor(tool_input)


def client_for(sdk: anthropic.Anthropic, context_window: int | None = None) -> ModelClient:
    return ModelClient(sdk, MODEL, max_retries=2, backoff_seconds=0.01, sleep=lambda _: None,
                       context_window=context_window)


@pytest.fixture
def model(sdk: anthropic.Anthropic) -> ModelClient:
    return client_for(sdk)


class Runs:
    """Runs of the issue whose conversations are kept in Redis, by a name of the test's; what each kept."""

    def __init__(self, book: Transcripts) -> None:
        self.book = book
        self.started: dict[str, RunTranscript] = {}

    def __call__(self, name: str) -> RunTranscript:
        if name not in self.started:
            self.started[name] = self.book.start(IssueRef("acme/textkit", 1), name, "here")
        return self.started[name]

    def saved(self, name: str, step: int = 1) -> list[dict[str, Any]]:
        """The messages the run's `step` (from 1) kept."""
        return self.book.conversations(IssueRef("acme/textkit", 1), self(name).run)[step - 1].messages

    def all_saved(self, name: str) -> list[list[dict[str, Any]]]:
        return [kept.messages for kept in self.book.conversations(IssueRef("acme/textkit", 1), self(name).run)]


@pytest.fixture
def runs(redis_client) -> Runs:
    return Runs(Transcripts(redis_client, [KEY]))


@pytest.fixture
def workspace(sample_checkout: Path, tmp_path: Path) -> WorkingTree:
    """A real git clone of the sample repository, as a workspace holds it."""
    jail = Jail()
    prepare(sample_checkout, tmp_path / "scratch", jail.owner)
    return WorkingTree(sample_checkout, SHOWN_ROOT, tmp_path / "scratch", owner=jail.owner)


def context() -> dict[str, str]:
    return {"repo": "acme/textkit", "root": SHOWN_ROOT, "branch": "ai-feature/issue-1", "issue_key": "acme/textkit#1"}


def crew(model: ModelClient, meter: Meter, workspace: WorkingTree, transcript: RunTranscript,
         body: str = SLUGIFY.body) -> Team:
    return Team({role.name: model for role in TEAM}, meter, workspace, Jail(),
                IssueText("acme/textkit#1", SLUGIFY.title, body), context(), 20, transcript)


def architect(model: Completer, meter: Meter, workspace: WorkingTree, transcript: RunTranscript,
              big_view: bool = False) -> tuple[Agent, Callable[[], Any]]:
    """The Architect's agent, with the editor's view of the root made very long when asked."""
    editor = EditorTool(workspace)
    tools = {"bash": BashTool(workspace, Jail()), EDITOR_TOOL_NAME: BigView(editor) if big_view else editor}
    agent = Agent(model, tools, [BASH_TOOL, EDITOR_TOOL], meter, 20,
                  transcript.conversation(ARCHITECT.title, 0, MODEL))
    task = task_text(Step(ARCHITECT), (), IssueText("acme/textkit#1", SLUGIFY.title, SLUGIFY.body).fenced("issue-0a1b"))
    return agent, lambda: agent.run(ARCHITECT.system_prompt(context()), task, ARCHITECT.final_tools)


def kinds(message: Mapping[str, Any]) -> list[str]:
    return [block["type"] for block in message["content"]]


# -- thinking blocks, as they came -------------------------------------------------------------------


def test_the_whole_team_approves_sending_every_thinking_block_back_as_it_came(
        model: ModelClient, workspace: WorkingTree, server: ScriptedModelServer, runs: Runs) -> None:
    meter, dropped = Meter(), server.thinking_dropped

    outcome = run_workflow(crew(model, meter, workspace, runs("t")).perform, max_revisions=3)

    assert outcome.kind == "approved"
    assert (workspace.root / SLUGIFY.module_path).read_text() == SLUGIFY.code
    assert len(meter.charges) == server.calls == 4 + 2 + 3 + 2
    assert server.thinking_dropped == dropped
    blocks = [block for messages in runs.all_saved("t") for message in messages
              if message["role"] == "assistant" for block in message["content"]]
    thinking = [block for block in blocks if block["type"] == "thinking"]
    assert len(thinking) == server.calls and all(block["thinking"] == "" and block["signature"] for block in thinking)
    redacted = [set(block) for block in blocks if block["type"] == "redacted_thinking"]
    assert redacted == [{"type", "data"}] * 4  # one per role


def test_thinking_and_redacted_blocks_become_params_exactly_as_the_api_sent_them(sdk: anthropic.Anthropic) -> None:
    task = task_text(Step(ARCHITECT), (), IssueText("acme/textkit#1", SLUGIFY.title, SLUGIFY.body).fenced("issue-0a1b"))
    request = {"model": MODEL, "max_tokens": 1024, "system": ARCHITECT.system_prompt(context()),
               "tools": [BASH_TOOL, EDITOR_TOOL]}
    first = sdk.messages.create(messages=[{"role": "user", "content": task}], **request)
    result = {"type": "tool_result", "tool_use_id": first.content[-1].id, "content": "README.md"}
    messages = [{"role": "user", "content": task},
                {"role": "assistant", "content": [as_param(block) for block in first.content]},
                {"role": "user", "content": [result]}]

    raw = sdk.messages.with_raw_response.create(messages=messages, **request)

    sent = raw.http_response.json()["content"]
    assert [block["type"] for block in sent] == ["redacted_thinking", "thinking", "tool_use"]
    assert [as_param(block) for block in raw.parse().content] == sent


class Tampering:
    """A model client that changes the conversation on its way out from the `at`-th call: what the loop must never do,
    to see what the API makes of it."""

    def __init__(self, model: ModelClient, at: int, change: Callable[[list[dict[str, Any]]], None]) -> None:
        self.model, self.at, self.change, self.calls = model, at, change, 0
        self.context_window = model.context_window

    def create(self, *, messages: Any, **request: Any) -> Any:
        self.calls += 1
        sent = json.loads(json.dumps(messages))
        if self.calls >= self.at:
            self.change(sent)
        return self.model.create(messages=sent, **request)


def drop_latest_thinking(messages: list[dict[str, Any]]) -> None:
    del messages[-2]["content"][0]


def alter_latest_thinking(messages: list[dict[str, Any]]) -> None:
    messages[-2]["content"][0]["thinking"] = "Let me reconsider."


def reorder_latest_thinking(messages: list[dict[str, Any]]) -> None:
    content = messages[-2]["content"]
    content[0], content[1] = content[1], content[0]


def change_first_signature(messages: list[dict[str, Any]]) -> None:
    block = messages[1]["content"][0]
    block["signature"] = block["signature"][:-6] + ("BBBBBB" if block["signature"].endswith("AAAAAA") else "AAAAAA")


def change_redacted_data(messages: list[dict[str, Any]]) -> None:
    messages[3]["content"][0]["data"] = "c29tZW9uZSBlbHNlJ3MgdGhvdWdodHM="


def drop_between(messages: list[dict[str, Any]]) -> None:
    del messages[3]["content"][1]


@pytest.mark.parametrize(("change", "at", "said"), [
    (drop_latest_thinking, 2, "blocks in the latest assistant message cannot be modified"),
    (alter_latest_thinking, 2, "blocks in the latest assistant message cannot be modified"),
    (reorder_latest_thinking, 3, "blocks in the latest assistant message cannot be modified"),
    (change_first_signature, 3, "messages.1.content.0: Invalid `signature` in `thinking` block"),
    (change_redacted_data, 4, "messages.3.content.0: Invalid `data` in `redacted_thinking` block"),
    (drop_between, 4, "The block is bound to a different conversation"),
])
def test_thinking_changed_on_its_way_out_ends_the_role_with_the_apis_reason(
        model: ModelClient, workspace: WorkingTree, runs: Runs,
        change: Callable[[list[dict[str, Any]]], None], at: int, said: str) -> None:
    meter = Meter()
    _, run = architect(Tampering(model, at, change), meter, workspace, runs("a"))

    with pytest.raises(AsmError, match="the model API refused the request") as caught:
        run()

    assert said in str(caught.value)
    assert len(meter.charges) == at - 1  # nothing billed for the refused request


# -- stop reasons ------------------------------------------------------------------------------------


def test_a_paused_turn_goes_back_as_it_is_and_its_continuation_completes_it(
        model: ModelClient, workspace: WorkingTree, server: ScriptedModelServer, runs: Runs) -> None:
    team = crew(model, Meter(), workspace, runs("t"), SLUGIFY.body + "\nasm-sandbox: stop=pause_turn@0")

    team.perform(Step(ARCHITECT), ())

    assert (workspace.root / SLUGIFY.module_path).read_text() == SLUGIFY.code
    assert server.calls == 4 + 1
    messages = runs.saved("t")
    assert kinds(messages[1]) == ["thinking", "tool_use"]  # the paused thinking, then the rest of that turn
    assert [m["role"] for m in messages] == ["user", "assistant"] * 4


def test_a_tool_call_cut_at_max_tokens_is_not_run_and_the_model_makes_it_again(
        model: ModelClient, workspace: WorkingTree, server: ScriptedModelServer, runs: Runs) -> None:
    team = crew(model, Meter(), workspace, runs("t"), SLUGIFY.body + "\nasm-sandbox: stop=max_tokens@1")

    team.perform(Step(ARCHITECT), ())

    messages = runs.saved("t")
    cut, answer = messages[3], messages[4]
    assert cut["content"][-1]["input"] == {"command": "create", "path": SLUGIFY.module_path}
    assert answer["content"] == [{"type": "tool_result", "tool_use_id": cut["content"][-1]["id"], "content": CUT_CALL,
                                  "is_error": True}]
    assert messages[5]["content"][-1]["input"]["file_text"] == SLUGIFY.code
    assert (workspace.root / SLUGIFY.module_path).read_text() == SLUGIFY.code
    assert server.calls == 4 + 1


def test_text_cut_at_max_tokens_is_followed_by_a_turn_that_says_so(
        model: ModelClient, workspace: WorkingTree, server: ScriptedModelServer, runs: Runs) -> None:
    team = crew(model, Meter(), workspace, runs("t"), SLUGIFY.body + "\nasm-sandbox: stop=max_tokens@3")

    output = team.perform(Step(ARCHITECT), ())

    assert output.summary == f"Implemented `slugify` in {SLUGIFY.module_path}; the existing tests pass."
    messages = runs.saved("t")
    assert messages[-2]["content"] == [{"type": "text", "text": CUT_TEXT}]
    assert server.calls == 4 + 1


def test_a_refusal_stops_the_role_with_the_reason(model: ModelClient, workspace: WorkingTree, runs: Runs) -> None:
    team = crew(model, Meter(), workspace, runs("t"), SLUGIFY.body + "\nasm-sandbox: stop=refusal@1")

    with pytest.raises(ModelRefused, match='^policy area `cyber`, "This request was declined because it could enable'):
        team.perform(Step(ARCHITECT), ())

    assert len(runs.saved("t")) == 4  # saved as far as it went
    assert not (workspace.root / SLUGIFY.module_path).exists()


def test_a_full_context_window_trims_and_retries_once(model: ModelClient, workspace: WorkingTree,
                                                      server: ScriptedModelServer, runs: Runs) -> None:
    meter, dropped = Meter({3: lambda: server.stop_next("model_context_window_exceeded")}), server.thinking_dropped
    _, run = architect(model, meter, workspace, runs("a"), big_view=True)

    result = run()

    assert "slugify" in result.summary
    assert server.calls == 4 + 1
    assert meter.prompt_sizes[3] <= meter.prompt_sizes[2] * 0.75  # the retry, trimmed below what overflowed
    messages = runs.saved("a")
    assert messages[2]["content"][0]["content"] == f"[{BIG:,} {TRIM_NOTE}"
    # The edit invalidated the thinking after it: the API was asked to drop it rather than refuse the request.
    assert server.thinking_dropped > dropped


def test_a_prompt_the_api_counts_above_the_window_is_trimmed_and_sent_again(workspace: WorkingTree,
                                                                           runs: Runs) -> None:
    # A model whose tokenizer counts one token a character: the guard's four-characters-a-token estimate
    # falls short, and the API's 400 "prompt is too long" is what tells the loop.
    with ScriptedModelServer(KEY, style="sonnet-5-5", chars_per_token=1) as dense, \
            anthropic.Anthropic(api_key=KEY, base_url=dense.url, max_retries=0) as sdk:
        dense.output_tokens_per_call = 50  # short replies: only the prompt can overrun the window
        roomy = Meter()
        architect(client_for(sdk), roomy, workspace, runs("roomy"), big_view=True)[1]()
        counted = [usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens for usage in roomy.charges]
        window = (counted[1] + counted[2]) // 2  # the long listing fits while it is the latest turn, not after
        assert counted[1] + 50 <= window < counted[2]
        dense.context_window = window
        (workspace.root / SLUGIFY.module_path).unlink()
        meter = Meter()

        result = architect(client_for(sdk, window), meter, workspace, runs("a"), big_view=True)[1]()

    assert "slugify" in result.summary
    assert len(meter.prompt_sizes) == len(roomy.prompt_sizes) + 1  # the refused call, and the same call trimmed
    assert meter.prompt_sizes[:3] == roomy.prompt_sizes[:3]  # the guard's estimate saw nothing to trim
    assert meter.prompt_sizes[3] < meter.prompt_sizes[2] - BIG // 2
    assert runs.saved("a")[2]["content"][0]["content"] == f"[{BIG:,} {TRIM_NOTE}"


def test_a_context_window_full_again_after_trimming_ends_the_role(model: ModelClient, workspace: WorkingTree,
                                                                 server: ScriptedModelServer, runs: Runs) -> None:
    meter = Meter({3: lambda: server.stop_next("model_context_window_exceeded", count=2)})
    _, run = architect(model, meter, workspace, runs("a"), big_view=True)

    with pytest.raises(AsmError, match="context window .* filled up again"):
        run()


# -- the context guard -------------------------------------------------------------------------------


def test_the_guard_trims_old_tool_results_to_fit_a_small_window(sdk: anthropic.Anthropic, workspace: WorkingTree,
                                                                 server: ScriptedModelServer, runs: Runs) -> None:
    roomy = Meter()
    architect(client_for(sdk), roomy, workspace, runs("roomy"), big_view=True)[1]()
    room = roomy.prompt_sizes[1] + 100  # the long listing fits while it is the latest turn, not one turn later
    (workspace.root / SLUGIFY.module_path).unlink()
    meter = Meter()

    result = architect(client_for(sdk, room // 4 + MAX_OUTPUT_TOKENS), meter, workspace, runs("a"),
                       big_view=True)[1]()

    assert "slugify" in result.summary
    assert max(meter.prompt_sizes) <= room
    assert meter.prompt_sizes[1] == roomy.prompt_sizes[1]  # nothing trimmed while it fitted
    messages = runs.saved("a")
    assert messages[0] == runs.saved("roomy")[0]  # the issue, whole
    assert messages[2]["content"][0]["content"] == f"[{BIG:,} {TRIM_NOTE}"
    assert messages[2]["content"][0]["tool_use_id"] == messages[1]["content"][-1]["id"]


def test_the_guard_never_trims_the_latest_turn(sdk: anthropic.Anthropic, workspace: WorkingTree,
                                              runs: Runs) -> None:
    room = 8_000  # the long listing cannot fit even as the latest turn
    _, run = architect(client_for(sdk, room // 4 + MAX_OUTPUT_TOKENS), Meter(), workspace, runs("a"),
                       big_view=True)

    with pytest.raises(AsmError, match="no longer fits the model's context window"):
        run()

    assert runs.saved("a")[-1]["content"][0]["content"] == "x" * BIG


def test_trimming_goes_oldest_first_and_leaves_the_issue_the_latest_turn_and_thinking_alone() -> None:
    def result(use_id: str, size: int) -> dict[str, Any]:
        return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use_id, "content": "y" * size}]}

    def call(use_id: str) -> dict[str, Any]:
        return {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": "s" * 500},
                                                 {"type": "tool_use", "id": use_id, "name": "bash", "input": {}}]}

    messages = [{"role": "user", "content": [{"type": "text", "text": "issue " * 1000}]},
                call("a"), result("a", 3000), call("b"), result("b", 3000), call("c"), result("c", 3000)]
    before = json.dumps(messages)

    dropped = trim_tool_results(messages, 2000)

    assert 2000 <= dropped < 3000
    assert messages[2]["content"][0] == {"type": "tool_result", "tool_use_id": "a", "content": f"[3,000 {TRIM_NOTE}"}
    assert messages[4]["content"][0]["content"] == "y" * 3000  # enough was dropped already
    assert [messages[k] for k in (0, 1, 3, 5, 6)] == [json.loads(before)[k] for k in (0, 1, 3, 5, 6)]
    assert trim_tool_results(messages, 10_000) < 3000  # a note is never trimmed again; the latest turn never


def test_a_paused_turn_keeps_the_tool_results_it_answers_whole() -> None:
    paused = {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": "s" * 50}]}
    messages = [{"role": "user", "content": [{"type": "text", "text": "issue"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "a", "name": "bash", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "y" * 3000}]},
                paused]

    assert trim_tool_results(messages, 2000) == 0
    assert messages[2]["content"][0]["content"] == "y" * 3000


# -- the transcript, every turn ----------------------------------------------------------------------


def test_the_transcript_is_saved_after_every_turn(model: ModelClient, workspace: WorkingTree, runs: Runs) -> None:
    seen: list[int] = []
    meter = Meter({n: (lambda: seen.append(len(runs.saved("a")))) for n in (2, 3, 4)})
    _, run = architect(model, meter, workspace, runs("a"))

    run()

    assert seen == [3, 5, 7]  # what a worker killed before that call leaves behind


# -- the model client's part -------------------------------------------------------------------------


def test_drop_block_is_asked_for_only_after_an_edit_and_only_of_models_that_bind_thinking(
        sdk: anthropic.Anthropic) -> None:
    binding = ModelClient(sdk, "claude-sonnet-5-5-20260928", 0, 0.0).thinking_options(history_edited=True)

    assert binding["thinking"]["block_binding"] == {"prefix_mismatch_behavior": "drop_block"}
    assert binding["extra_headers"] == {"anthropic-beta": "thinking-binding-controls-2026-08-01"}
    assert ModelClient(sdk, MODEL, 0, 0.0).thinking_options(history_edited=False) == {}
    assert ModelClient(sdk, "claude-sonnet-4-6", 0, 0.0).thinking_options(history_edited=True) == {}


def test_the_context_window_comes_from_the_model(sdk: anthropic.Anthropic) -> None:
    assert ModelClient(sdk, MODEL, 0, 0.0).context_window == 1_000_000
    assert ModelClient(sdk, "claude-haiku-4-5-20251001", 0, 0.0).context_window == 200_000
