"""The scripted Messages API server, through the real `anthropic` client, and the script it plays."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from asm.agents.roles import ARCHITECT, PRODUCT_OWNER, SECURITY, TESTER, Role
from asm.agents.team import IssueText, task_text
from asm.agents.tools import BASH_TOOL, EDITOR_TOOL
from asm.agents.workflow import Step
from asm.sandbox.model_server import CREDIT_MESSAGE, ScriptedModelServer
from asm.sandbox.sample_repo import SOLUTIONS, TEST_COMMAND

MODEL_KEY = KEY = "sk-ant-sandbox-test"
MODEL = "claude-sonnet-4-6"
ROOT = "/work/ws/acme__textkit/issue-3"
SLUGIFY = SOLUTIONS[0]


def system_prompt(role: Role) -> str:
    return role.system_prompt({"repo": "acme/textkit", "root": ROOT, "branch": "ai-feature/issue-3",
                               "issue_key": "acme/textkit#3"})


def first_turn(role: Role, title: str = SLUGIFY.title, body: str = SLUGIFY.body) -> str:
    """The user turn asm starts a role with: the issue fenced as data, then the role's task."""
    return task_text(Step(role), (), IssueText("acme/textkit#3", title, body).fenced("issue-0123456789ab"))


def ask(sdk: anthropic.Anthropic, messages: list[dict[str, Any]], system: Any = "You are helpful.",
        **options: Any) -> anthropic.types.Message:
    return sdk.messages.create(model=MODEL, max_tokens=1024, system=system, messages=messages, **options)


def hello() -> list[dict[str, Any]]:
    return [{"role": "user", "content": "Hello"}]


# -- the API's checks --------------------------------------------------------------------------------


def test_a_plain_call_answers_with_text_and_usage(server: ScriptedModelServer, sdk: anthropic.Anthropic) -> None:
    calls = server.calls
    reply = ask(sdk, hello())

    assert reply.role == "assistant"
    assert reply.model == MODEL
    assert reply.content[0].type == "text"
    assert reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert server.calls == calls + 1


def test_a_wrong_key_is_an_authentication_error(server: ScriptedModelServer) -> None:
    with anthropic.Anthropic(api_key="sk-ant-wrong", base_url=server.url, max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError):
            ask(wrong, hello())


def test_an_unanswered_tool_use_is_a_bad_request(sdk: anthropic.Anthropic) -> None:
    messages = [
        {"role": "user", "content": "List the files."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "bash",
                                           "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "text", "text": "go on"}]},
    ]

    with pytest.raises(anthropic.BadRequestError, match="toolu_01"):
        ask(sdk, messages, tools=[BASH_TOOL])


def test_an_answered_tool_use_is_accepted(sdk: anthropic.Anthropic) -> None:
    messages = [
        {"role": "user", "content": "List the files."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "bash",
                                           "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "README.md"}]},
    ]

    assert ask(sdk, messages, tools=[BASH_TOOL]).stop_reason == "end_turn"


def test_turns_that_do_not_alternate_are_a_bad_request(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="alternate"):
        ask(sdk, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_a_first_turn_from_the_assistant_is_a_bad_request(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        ask(sdk, [{"role": "assistant", "content": "hi"}])


# -- injected failures ---------------------------------------------------------------------------------


def test_overloaded(server: ScriptedModelServer, sdk: anthropic.Anthropic) -> None:
    server.fail_next(529)

    with pytest.raises(anthropic.InternalServerError) as caught:
        ask(sdk, hello())

    assert caught.value.status_code == 529
    assert isinstance(caught.value, getattr(anthropic, "OverloadedError", anthropic.InternalServerError))
    assert ask(sdk, hello()).content  # only the next call failed


def test_failures_come_in_the_number_asked(server: ScriptedModelServer, sdk: anthropic.Anthropic) -> None:
    calls = server.calls
    server.fail_next(529, count=2)

    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError):
            ask(sdk, hello())
    assert ask(sdk, hello()).content
    assert server.calls == calls + 3


def test_rate_limited_with_retry_after(server: ScriptedModelServer, sdk: anthropic.Anthropic) -> None:
    server.fail_next(429, retry_after=1)

    with pytest.raises(anthropic.RateLimitError) as caught:
        ask(sdk, hello())

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "1"


def test_out_of_credit(server: ScriptedModelServer, sdk: anthropic.Anthropic) -> None:
    server.fail_next(400)

    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(sdk, hello())

    assert "credit balance is too low" in str(caught.value.message)
    assert CREDIT_MESSAGE in str(caught.value.body)


def test_a_wrong_key_is_refused_even_when_a_failure_is_queued(server: ScriptedModelServer) -> None:
    server.fail_next(529)

    with anthropic.Anthropic(api_key="sk-ant-wrong", base_url=server.url, max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError):
            ask(wrong, hello())


# -- prompt caching --------------------------------------------------------------------------------------


def cached_request() -> dict[str, Any]:
    system = [{"type": "text", "text": "You are the Architect. " * 200, "cache_control": {"type": "ephemeral"}}]
    return {"system": system, "messages": hello()}


def test_the_same_cached_prefix_is_written_then_read(server: ScriptedModelServer, sdk: anthropic.Anthropic) -> None:
    read_before = server.usage_total["cache_read_input_tokens"]
    first = ask(sdk, **cached_request())
    second = ask(sdk, **cached_request())

    assert first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert server.usage_total["cache_read_input_tokens"] - read_before == second.usage.cache_read_input_tokens


def test_a_request_without_breakpoints_is_billed_as_plain_input(sdk: anthropic.Anthropic) -> None:
    for _ in range(2):
        reply = ask(sdk, system="You are the Architect. " * 200, messages=hello())
        assert reply.usage.cache_read_input_tokens == 0
        assert reply.usage.cache_creation_input_tokens == 0


def test_a_different_prefix_is_not_read_from_the_cache(sdk: anthropic.Anthropic) -> None:
    ask(sdk, **cached_request())
    other = cached_request()
    other["system"][0]["text"] = "You are the Tester. " * 200

    assert ask(sdk, **other).usage.cache_read_input_tokens == 0


def test_a_longer_conversation_reads_the_earlier_prefix(sdk: anthropic.Anthropic) -> None:
    first = ask(sdk, **cached_request())
    longer = cached_request()
    longer["messages"] = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": [{"type": "text", "text": "More.", "cache_control": {"type": "ephemeral"}}]},
    ]

    second = ask(sdk, **longer)

    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens > 0  # the new turns are written for the next call


# -- the script -----------------------------------------------------------------------------------------


def role_call(sdk: anthropic.Anthropic, role: Role, messages: list[dict[str, Any]],
              title: str = SLUGIFY.title, body: str = SLUGIFY.body) -> anthropic.types.Message:
    opening = {"role": "user", "content": [{"type": "text", "text": first_turn(role, title, body)}]}
    return ask(sdk, [opening, *messages[1:]], system=[{"type": "text", "text": system_prompt(role)}],
               tools=[BASH_TOOL, EDITOR_TOOL])


def start(role: Role) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": f"Now do your part as the {role.title}."}]}]


def answered(messages: list[dict[str, Any]], reply: anthropic.types.Message, output: str = "ok",
             is_error: bool = False) -> list[dict[str, Any]]:
    """The conversation after `reply`, with every tool it asked for answered by `output`."""
    assistant = {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in reply.content]}
    results = [{"type": "tool_result", "tool_use_id": block.id, "content": output, "is_error": is_error}
               for block in reply.content if block.type == "tool_use"]
    return [*messages, assistant, {"role": "user", "content": results}]


def test_every_call_is_logged_with_its_model_prompt_task_role_and_bill(server: ScriptedModelServer,
                                                                        sdk: anthropic.Anthropic) -> None:
    reply = role_call(sdk, SECURITY, start(SECURITY))
    server.fail_next(529)
    with pytest.raises(anthropic.InternalServerError):
        sdk.messages.create(model="claude-opus-4-1", max_tokens=64, messages=hello())

    answered_call, failed = server.requests
    assert (answered_call.model, answered_call.role) == (MODEL, "Security reviewer")
    assert answered_call.system == system_prompt(SECURITY)
    assert answered_call.first_user == first_turn(SECURITY)
    assert answered_call.usage == reply.usage.model_dump(include={"input_tokens", "output_tokens",
                                                                  "cache_creation_input_tokens",
                                                                  "cache_read_input_tokens"})
    assert (failed.model, failed.system, failed.first_user, failed.role, failed.usage) == (
        "claude-opus-4-1", "", "Hello", "", None)
    server.reset()
    assert server.requests == []


def test_the_model_named_changes_neither_the_script_nor_the_bill(sdk: anthropic.Anthropic) -> None:
    replies = [sdk.messages.create(model=model, max_tokens=1024, system=system_prompt(ARCHITECT),
                                   messages=[{"role": "user", "content": first_turn(ARCHITECT)}],
                                   tools=[BASH_TOOL, EDITOR_TOOL])
               for model in ("claude-opus-4-1", "claude-haiku-4-5")]

    dear, cheap = ([block.model_dump(exclude={"id"}) for block in reply.content] for reply in replies)
    assert dear == cheap
    assert replies[0].usage == replies[1].usage  # nothing cached: no breakpoints, and caches are per model anyway


def test_the_prompts_name_what_the_script_reads() -> None:
    prompt, opening = system_prompt(ARCHITECT), first_turn(ARCHITECT)

    assert "You are the Architect" in prompt
    assert f"checked out at {ROOT} on the branch" in prompt
    assert SLUGIFY.title not in prompt  # the issue is data in the user turn, not instructions
    assert "The issue to work on, acme/textkit#3, follows" in opening
    assert f"Title: {SLUGIFY.title}" in opening


def test_the_architect_first_views_the_root(sdk: anthropic.Anthropic) -> None:
    reply = role_call(sdk, ARCHITECT, start(ARCHITECT))

    assert reply.stop_reason == "tool_use"
    [use] = reply.content
    assert use.type == "tool_use"
    assert use.name == "str_replace_based_edit_tool"
    assert use.input == {"command": "view", "path": ROOT}


def test_the_architect_then_creates_the_solution_and_runs_the_tests(sdk: anthropic.Anthropic) -> None:
    messages = start(ARCHITECT)
    actions = []
    for _ in range(4):
        reply = role_call(sdk, ARCHITECT, messages)
        actions.append(reply.content[0])
        messages = answered(messages, reply)

    view, create, test, summary = actions
    assert create.input == {"command": "create", "path": SLUGIFY.module_path, "file_text": SLUGIFY.code}
    assert test.input == {"command": TEST_COMMAND}
    assert summary.type == "text" and "slugify" in summary.text


def test_the_architect_asks_when_told_to_clarify(sdk: anthropic.Anthropic) -> None:
    reply = role_call(sdk, ARCHITECT, start(ARCHITECT), body="Vague.\nasm-sandbox: clarify")

    assert reply.content[0].name == "request_clarification"
    assert reply.content[0].input["questions"].strip()


def test_an_unknown_issue_gets_a_notes_file(sdk: anthropic.Anthropic) -> None:
    messages = start(ARCHITECT)
    reply = role_call(sdk, ARCHITECT, messages, title="Something nobody scripted", body="")
    reply = role_call(sdk, ARCHITECT, answered(messages, reply), title="Something nobody scripted", body="")

    assert reply.content[0].input["command"] == "create"
    assert reply.content[0].input["path"] == "docs/issue-3.md"


def po_decision(sdk: anthropic.Anthropic, body: str, test_output: str = "OK",
                tests_failed: bool = False) -> dict[str, Any]:
    messages = start(PRODUCT_OWNER)
    first = role_call(sdk, PRODUCT_OWNER, messages, body=body)
    assert first.content[0].name == "bash"
    assert first.content[0].input == {"command": TEST_COMMAND}
    second = role_call(sdk, PRODUCT_OWNER, answered(messages, first, test_output, tests_failed), body=body)
    [use] = second.content
    assert use.name == "submit_decision"
    return use.input


def test_the_po_approves_by_default(sdk: anthropic.Anthropic) -> None:
    assert po_decision(sdk, SLUGIFY.body)["decision"] == "APPROVE"


def test_the_po_follows_the_reject_directive(sdk: anthropic.Anthropic) -> None:
    decision = po_decision(sdk, SLUGIFY.body + "\nasm-sandbox: po=REJECT")

    assert decision["decision"] == "REJECT"
    assert decision["feedback"].strip()


def test_the_po_asks_for_a_revision_when_the_tests_fail(sdk: anthropic.Anthropic) -> None:
    decision = po_decision(sdk, SLUGIFY.body, "FAILED (failures=1)", tests_failed=True)

    assert decision["decision"] == "REVISE"


@pytest.mark.parametrize("role", [SECURITY, TESTER])
def test_the_reviewers_start_with_bash_or_the_editor(sdk: anthropic.Anthropic, role: Role) -> None:
    reply = role_call(sdk, role, start(role))

    assert reply.content[0].name in ("bash", "str_replace_based_edit_tool")


def test_past_the_end_of_its_script_a_role_summarises(sdk: anthropic.Anthropic) -> None:
    messages = start(SECURITY)
    for _ in range(5):
        reply = role_call(sdk, SECURITY, messages)
        if reply.stop_reason == "end_turn":
            break
        messages = answered(messages, reply)

    assert reply.stop_reason == "end_turn"
    assert reply.content[0].text
