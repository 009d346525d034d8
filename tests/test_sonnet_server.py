"""The scripted Messages API server in the Sonnet 5.5 style, through the real `anthropic` client: signed
thinking blocks, the API's rules for sending them back, its refusals, and every stop reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import pytest

from asm.agents.roles import ARCHITECT, Role
from asm.agents.team import IssueText, task_text
from asm.agents.tools import BASH_TOOL, EDITOR_TOOL
from asm.agents.workflow import Step
from asm.sandbox.fleet import Sandbox
from asm.sandbox.model_server import ScriptedModelServer
from asm.sandbox.redis_server import RedisServer
from asm.sandbox.sample_repo import SOLUTIONS
from asm.sandbox.sonnet_style import BETA

MODEL_STYLE = "sonnet-5-5"
MODEL_KEY = KEY = "sk-ant-sandbox-sonnet"
MODEL = "claude-sonnet-5-5"
ROOT = "/work/ws/acme__textkit/issue-3"
SLUGIFY = SOLUTIONS[0]
MODIFIED = "blocks in the latest assistant message cannot be modified"
BOUND = "The block is bound to a different conversation"
DROP_BLOCK = {"type": "adaptive", "block_binding": {"prefix_mismatch_behavior": "drop_block"}}


def system_prompt(role: Role = ARCHITECT) -> list[dict[str, Any]]:
    text = role.system_prompt({"repo": "acme/textkit", "root": ROOT, "branch": "ai-feature/issue-3",
                               "issue_key": "acme/textkit#3"})
    return [{"type": "text", "text": text}]


def opening(body: str = SLUGIFY.body, role: Role = ARCHITECT) -> list[dict[str, Any]]:
    text = task_text(Step(role), (), IssueText("acme/textkit#3", SLUGIFY.title, body).fenced("issue-0123456789ab"))
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def ask(sdk: anthropic.Anthropic, messages: list[dict[str, Any]], **options: Any) -> anthropic.types.Message:
    return sdk.messages.create(model=MODEL, max_tokens=8192, system=system_prompt(), messages=messages,
                                  tools=[BASH_TOOL, EDITOR_TOOL], **options)


def turn_of(reply: anthropic.types.Message) -> dict[str, Any]:
    return {"role": "assistant", "content": [block.to_dict() for block in reply.content]}


def answered(messages: list[dict[str, Any]], reply: anthropic.types.Message,
             output: str = "ok") -> list[dict[str, Any]]:
    """The conversation after `reply`, sent back as it came, every tool call answered."""
    results = [{"type": "tool_result", "tool_use_id": block.id, "content": output}
               for block in reply.content if block.type == "tool_use"]
    return [*messages, turn_of(reply), {"role": "user", "content": results}]


def conversation(sdk: anthropic.Anthropic, steps: int, body: str = SLUGIFY.body) -> list[dict[str, Any]]:
    """The Architect's conversation after `steps` replies, each answered; it ends with a user turn."""
    messages = opening(body)
    for _ in range(steps):
        messages = answered(messages, ask(sdk, messages))
    return messages


def thinking_at(messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(i, j) for i, m in enumerate(messages) if m["role"] == "assistant"
            for j, block in enumerate(m["content"]) if block["type"] in ("thinking", "redacted_thinking")]


def refused(sdk: anthropic.Anthropic, messages: list[dict[str, Any]], **options: Any) -> str:
    with pytest.raises(anthropic.BadRequestError) as caught:
        ask(sdk, messages, **options)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    return str(caught.value.body["error"]["message"])


# -- what a reply looks like -----------------------------------------------------------------------


def test_a_reply_thinks_first_with_a_signed_block_whose_text_is_omitted(sdk: anthropic.Anthropic) -> None:
    reply = ask(sdk, opening())

    thinking, use = reply.content
    assert (thinking.type, thinking.thinking) == ("thinking", "")  # display "omitted" is the default
    assert len(thinking.signature) > 100
    assert (use.type, use.name, reply.stop_reason) == ("tool_use", "str_replace_based_edit_tool", "tool_use")


def test_summarized_thinking_has_its_text(sdk: anthropic.Anthropic) -> None:
    reply = ask(sdk, opening(), thinking={"type": "adaptive", "display": "summarized"})

    assert reply.content[0].thinking.startswith("Next:")


def test_some_replies_carry_a_redacted_block_too(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 1)

    reply = ask(sdk, messages)

    assert [block.type for block in reply.content] == ["redacted_thinking", "thinking", "tool_use"]
    assert reply.content[0].data


def test_a_whole_role_sent_back_unchanged_is_accepted_through_to_its_last_words(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 3)

    reply = ask(sdk, messages)

    assert reply.stop_reason == "end_turn"
    assert [block.type for block in reply.content] == ["thinking", "text"]
    assert len(thinking_at(messages)) == 4  # one redacted among them, kept as it came


# -- the rules for sending thinking back -------------------------------------------------------------


def test_a_thinking_block_dropped_from_the_latest_turn_is_refused(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 1)
    del messages[1]["content"][0]

    assert f"messages.1.content.0: `thinking` or `redacted_thinking` {MODIFIED}" in refused(sdk, messages)


def test_a_redacted_block_dropped_from_the_latest_turn_is_refused(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 2)
    assert messages[3]["content"][0]["type"] == "redacted_thinking"
    del messages[3]["content"][0]

    assert MODIFIED in refused(sdk, messages)


def test_thinking_blocks_reordered_in_the_latest_turn_are_refused(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 2)
    content = messages[3]["content"]
    content[0], content[1] = content[1], content[0]

    assert MODIFIED in refused(sdk, messages)


def test_altered_thinking_text_in_the_latest_turn_is_refused(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 1)
    messages[1]["content"][0]["thinking"] = "I will do as the issue says."

    assert MODIFIED in refused(sdk, messages)


def test_a_changed_signature_in_an_earlier_turn_is_an_invalid_signature(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 2)
    signature = messages[1]["content"][0]["signature"]
    messages[1]["content"][0]["signature"] = signature[:-8] + ("A" * 8 if not signature.endswith("A" * 8) else "B" * 8)

    assert refused(sdk, messages) == "messages.1.content.0: Invalid `signature` in `thinking` block"


def test_altered_thinking_text_in_an_earlier_turn_is_an_invalid_signature(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 2)
    messages[1]["content"][0]["thinking"] = "edited"

    assert refused(sdk, messages) == "messages.1.content.0: Invalid `signature` in `thinking` block"


def test_changed_redacted_data_in_an_earlier_turn_is_invalid_data(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 3)
    messages[3]["content"][0]["data"] = "RW5jcnlwdGVkIGJ5IHNvbWVvbmUgZWxzZQ=="

    assert refused(sdk, messages) == "messages.3.content.0: Invalid `data` in `redacted_thinking` block"


def test_a_thinking_block_dropped_between_others_binds_the_later_ones_to_another_conversation(
        sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 3)
    del messages[3]["content"][1]  # the second block of the second turn; the first and the third turn keep theirs

    message = refused(sdk, messages)

    assert message.startswith(f"messages.5.content.0: Invalid `signature` in `thinking` block. {BOUND}.")
    assert BETA in message  # the header `drop_block` needs, named since the request did not send it


def test_thinking_blocks_moved_across_turns_are_refused(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 3)
    messages[1]["content"][0], messages[3]["content"][1] = messages[3]["content"][1], messages[1]["content"][0]

    assert BOUND in refused(sdk, messages)


def test_dropping_a_leading_run_of_thinking_blocks_is_accepted(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 3)
    del messages[1]["content"][0]  # the oldest block
    del messages[3]["content"][:2]  # and the next two: still a leading run

    assert ask(sdk, messages).stop_reason == "end_turn"


def test_an_edited_earlier_turn_binds_every_later_thinking_block_to_another_conversation(
        sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 3)
    messages[2]["content"][0]["content"] = "shortened"

    assert refused(sdk, messages).startswith(f"messages.3.content.0: Invalid `data` in `redacted_thinking` block. "
                                                f"{BOUND}")


def test_with_drop_block_the_invalidated_blocks_are_dropped_and_reported(sdk: anthropic.Anthropic,
                                                                         server: ScriptedModelServer) -> None:
    messages = conversation(sdk, 3)
    messages[2]["content"][0]["content"] = "shortened"
    dropped_before = server.thinking_dropped

    reply = ask(sdk, messages, thinking=DROP_BLOCK, extra_headers={"anthropic-beta": BETA})

    assert reply.stop_reason == "end_turn"
    paths = [entry["path"] for entry in reply.input_transformations]
    assert paths == ["messages.3.content.0", "messages.3.content.1", "messages.5.content.0"]
    assert {entry["reason"] for entry in reply.input_transformations} == {"prefix_binding_mismatch"}
    assert server.thinking_dropped - dropped_before == 3
    # The next turn, produced on the edited history, is valid from then on: only the old blocks go again.
    later = [*messages, turn_of(reply), {"role": "user", "content": "Is there anything else?"}]
    again = ask(sdk, later, thinking=DROP_BLOCK, extra_headers={"anthropic-beta": BETA})
    assert [entry["path"] for entry in again.input_transformations] == paths


def test_drop_block_without_the_beta_header_is_refused(sdk: anthropic.Anthropic) -> None:
    message = refused(sdk, opening(), thinking=DROP_BLOCK)

    assert BETA in message


def test_a_cache_breakpoint_on_a_thinking_block_is_refused(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 1)
    messages[1]["content"][0]["cache_control"] = {"type": "ephemeral"}

    assert "cache_control" in refused(sdk, messages)


def test_moving_cache_breakpoints_elsewhere_changes_nothing(sdk: anthropic.Anthropic) -> None:
    messages = conversation(sdk, 2)
    messages[0]["content"][0]["cache_control"] = {"type": "ephemeral"}
    messages[2]["content"][0]["cache_control"] = {"type": "ephemeral"}

    assert ask(sdk, messages).stop_reason == "tool_use"


# -- what Sonnet 5.5 refuses in a request ------------------------------------------------------------


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "bash"}])
def test_forced_tool_use_is_refused(sdk: anthropic.Anthropic, choice: dict[str, Any]) -> None:
    assert refused(sdk, opening(), tool_choice=choice) == \
        'tool_choice: type "tool" and "any" are not supported for this model.'


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "none"}])
def test_auto_and_none_tool_choice_are_accepted(sdk: anthropic.Anthropic, choice: dict[str, Any]) -> None:
    assert ask(sdk, opening(), tool_choice=choice).content


@pytest.mark.parametrize("option", [{"temperature": 0.2}, {"top_p": 0.9}, {"top_k": 40}])
def test_non_default_sampling_parameters_are_refused(sdk: anthropic.Anthropic, option: dict[str, Any]) -> None:
    [(name, _)] = option.items()

    # The SDK no longer takes sampling parameters as arguments; older code sends them all the same.
    assert refused(sdk, opening(), extra_body=option) == f"`{name}` is deprecated for this model."


def test_the_default_temperature_is_accepted(sdk: anthropic.Anthropic) -> None:
    assert ask(sdk, opening(), extra_body={"temperature": 1.0}).content


def test_thinking_cannot_be_disabled(sdk: anthropic.Anthropic) -> None:
    assert "between_tools" in refused(sdk, opening(), thinking={"type": "disabled"})


# -- stop reasons ------------------------------------------------------------------------------------


def test_max_tokens_cuts_a_tool_call_in_the_middle(sdk: anthropic.Anthropic, server: ScriptedModelServer) -> None:
    messages = conversation(sdk, 1)
    server.stop_next("max_tokens")

    reply = ask(sdk, messages)

    assert reply.stop_reason == "max_tokens"
    assert [block.type for block in reply.content][-1] == "tool_use"
    assert reply.content[-1].input == {"command": "create", "path": SLUGIFY.module_path}  # file_text never came
    # Answered (the call not run), the same step comes again, whole.
    again = ask(sdk, answered(messages, reply, "not run: cut off"))
    assert again.content[-1].input["file_text"] == SLUGIFY.code


def test_pause_turn_is_thinking_only_and_the_paused_turn_sent_back_is_continued(
        sdk: anthropic.Anthropic, server: ScriptedModelServer) -> None:
    server.stop_next("pause_turn")

    paused = ask(sdk, opening())

    assert paused.stop_reason == "pause_turn"
    assert [block.type for block in paused.content] == ["thinking"]
    rest = ask(sdk, [*opening(), turn_of(paused)])
    assert [block.type for block in rest.content] == ["tool_use"]
    assert rest.content[0].input == {"command": "view", "path": ROOT}


def test_refusal_is_an_empty_reply_with_its_details(sdk: anthropic.Anthropic, server: ScriptedModelServer) -> None:
    server.stop_next("refusal")

    reply = ask(sdk, opening())

    assert (reply.stop_reason, reply.content) == ("refusal", [])
    assert reply.stop_details.type == "refusal" and reply.stop_details.category


def test_model_context_window_exceeded_on_demand(sdk: anthropic.Anthropic, server: ScriptedModelServer) -> None:
    server.stop_next("model_context_window_exceeded")

    reply = ask(sdk, opening())

    assert reply.stop_reason == "model_context_window_exceeded"


def test_a_prompt_over_the_window_is_refused_and_one_whose_output_would_overrun_it_stops_at_the_window() -> None:
    with ScriptedModelServer(KEY, style="sonnet-5-5", context_window=500) as small, \
            anthropic.Anthropic(api_key=KEY, base_url=small.url, max_retries=0) as sdk:
        with pytest.raises(anthropic.BadRequestError, match=r"prompt is too long: \d+ tokens > 500 maximum"):
            ask(sdk, opening())
        short = [{"role": "user", "content": "Hello"}]
        reply = sdk.messages.create(model=MODEL, max_tokens=8192, messages=short)
        assert reply.stop_reason == "model_context_window_exceeded"
        assert sdk.messages.create(model=MODEL, max_tokens=100, messages=short).stop_reason == "end_turn"


def test_an_issue_directive_ends_a_step_once_with_the_stop_reason_asked(sdk: anthropic.Anthropic) -> None:
    messages = opening(SLUGIFY.body + "\nasm-sandbox: stop=max_tokens@0")

    cut = ask(sdk, messages)
    whole = ask(sdk, answered(messages, cut, "not run"))

    assert cut.stop_reason == "max_tokens" and cut.content[-1].input == {"command": "view"}
    assert whole.stop_reason == "tool_use" and whole.content[-1].input == {"command": "view", "path": ROOT}


def test_the_default_style_has_no_thinking_and_its_stops_too() -> None:
    with ScriptedModelServer(KEY) as plain, \
            anthropic.Anthropic(api_key=KEY, base_url=plain.url, max_retries=0) as sdk:
        plain.stop_next("max_tokens")
        reply = ask(sdk, opening())
        assert [block.type for block in reply.content] == ["tool_use"]
        assert reply.stop_reason == "max_tokens"
        assert ask(sdk, opening(), extra_body={"temperature": 0.2}).content  # no Sonnet 5.5 rules here


# -- retry headers -----------------------------------------------------------------------------------


def test_a_failure_can_carry_retry_after_ms_and_x_should_retry(sdk: anthropic.Anthropic,
                                                               server: ScriptedModelServer) -> None:
    server.fail_next(529, retry_after=2, retry_after_ms=1500, should_retry=False)

    with pytest.raises(anthropic.InternalServerError) as caught:
        ask(sdk, opening())

    headers = caught.value.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"], headers["x-should-retry"]) == ("2", "1500", "false")


def test_the_sandbox_starts_its_model_in_the_style_asked(tmp_path: Path, redis_server: RedisServer) -> None:
    with Sandbox(tmp_path, model_latency=0.0, model_style="sonnet-5-5", redis_url=redis_server.url) as box:
        assert box.model is not None and box.model.style == "sonnet-5-5"

