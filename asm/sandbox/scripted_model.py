"""The scripted model's mind: a Messages API request in, the next assistant turn out.

It plays each role the way Claude would with the same tools: it reads the system prompt asm
wrote (role, repository root, issue), counts its own earlier turns, and takes the next action
of that role's script. The sample issues' code and tests come from `sample_repo.SOLUTIONS`.

It finds the issue where asm puts it, fenced in the first user message, and an issue can steer
the script with a directive line in its body, for tests (visible text: asm removes hidden markup
before the model sees an issue):
`asm-sandbox: po=REVISE,APPROVE; clarify; turns=5; run=env > probe.txt`
- `po=`: the Product Owner's decision in each round (the last one repeats);
- `clarify`: the Architect asks questions instead of implementing;
- `turns=N`: the Architect spends N extra turns looking around first;
- `run=CMD`: the Architect also runs CMD with bash;
- `hostile=FOLDER; ports=P,Q`: the Architect first tries every attack of `hostile.attacks`;
- `leak=TEXT`: the Architect writes TEXT into `leak.txt` (or, with `clarify`, into its questions);
- `stop=REASON@N[,REASON@N...]`: in its first round the Architect's step N (from 0) ends, once, with that
  stop reason instead of its own: `max_tokens` (cut in the middle, a tool call's input incomplete),
  `pause_turn`, `refusal` or `model_context_window_exceeded`. Repeated, the step goes as scripted.

A reply cut short (the server knows which) does not count as a step taken, and a request that ends
with a paused assistant turn asks for the rest of that step.

On a follow-up (asm quotes a pull request's remarks or failed checks after the issue) the Architect
answers each remark where it points (a line noting it, inserted at the remark's file and line, or at
the top of the issue's module) or notes the failed checks it fixed, and runs the tests. With the
team's questions answered (asm quotes them too), `clarify` is done with and the Architect builds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from asm.sandbox.hostile import attacks
from asm.sandbox.sample_repo import TEST_COMMAND, Solution, solution_for

ROLE_PATTERN = re.compile(r"You are the (Architect|Security reviewer|Tester|Product Owner)\b")
ROOT_PATTERN = re.compile(r"checked out at (\S+) on the branch")
ISSUE_PATTERN = re.compile(r"The issue to work on, (\S+)#(\d+), follows")
TITLE_PATTERN = re.compile(r"^Title: (.*)$", re.M)
REVISION_PATTERN = re.compile(r"Revision (\d+)\.")
DIRECTIVE_PATTERN = re.compile(r"^[ \t>]*asm-sandbox:(.*)$", re.M)
STOP_REASONS = ("max_tokens", "pause_turn", "refusal", "model_context_window_exceeded")
# How asm frames a follow-up's quoted data (asm.run.pull_run) and the answers to the team's questions.
REVIEW_PATTERN = re.compile(r"This run is a follow-up on that pull request: what people")
CHECKS_PATTERN = re.compile(r"This run is a follow-up on that pull request: its checks")
ANSWERS_PATTERN = re.compile(r"The team asked questions about this issue before")
REMARK_PATTERN = re.compile(r"^#### [^\n]*? by @(\S+)(?: on `([^`\n]+)`(?: line (\d+))?)? \([a-z]+:\d+\)\n\n([^\n]*)",
                            re.M)
FAILED_CHECK_PATTERN = re.compile(r"^### (.+): (?:FAILURE|TIMED_OUT|STARTUP_FAILURE|failure|timed_out|error)\s*$",
                                  re.M)


@dataclass(frozen=True)
class Directives:
    po: tuple[str, ...] = ("APPROVE",)
    clarify: bool = False
    extra_turns: int = 0
    run: str = ""
    hostile: str = ""
    ports: tuple[int, ...] = ()
    leak: str = ""
    stops: tuple[tuple[str, int], ...] = ()  # (stop reason, the Architect's step it ends)

    @classmethod
    def parse(cls, text: str) -> Directives:
        match = DIRECTIVE_PATTERN.search(text)
        if not match:
            return cls()
        values: dict[str, Any] = {}
        for part in (p.strip() for p in match.group(1).split(";")):
            name, _, value = part.partition("=")
            if name == "po":
                values["po"] = tuple(v.strip().upper() for v in value.split(","))
            elif name == "clarify":
                values["clarify"] = True
            elif name == "turns":
                values["extra_turns"] = int(value)
            elif name in ("run", "hostile", "leak"):
                values[name] = value.strip()
            elif name == "ports":
                values["ports"] = tuple(int(port) for port in value.split(",") if port.strip())
            elif name == "stop":
                values["stops"] = tuple(_stops(value))
        return cls(**values)


def _stops(text: str) -> list[tuple[str, int]]:
    """`max_tokens@1,pause_turn` as (reason, step) pairs; what is not a stop reason is left out."""
    pairs = []
    for item in text.split(","):
        reason, _, step = item.strip().partition("@")
        if reason in STOP_REASONS and (step.isdigit() or not step):
            pairs.append((reason, int(step or 0)))
    return pairs


@dataclass(frozen=True)
class Situation:
    """What the script needs to know, read off one request."""

    role: str
    root: str
    issue_number: int
    title: str
    directives: Directives
    revision: int
    feedback: str
    turn: int  # how many steps this role has taken already
    last_result: Mapping[str, Any] | None
    continuing: bool = False  # the request ends with a paused assistant turn, to be continued
    conversation: str = ""  # names this role's conversation (its system prompt and first turn)
    follow_up: str = ""  # "review" or "checks" on a follow-up run, else ""
    remarks: tuple[tuple[str, str, int, str], ...] = ()  # a review's remarks: (author, path, line, first line)
    failed_checks: tuple[str, ...] = ()
    answered: bool = False  # asm quotes answers to the team's questions

    @classmethod
    def read(cls, request: Mapping[str, Any], was_cut: Callable[[Mapping[str, Any]], bool] = lambda _: False
             ) -> Situation:
        system = request.get("system") or ""
        if not isinstance(system, str):
            system = "\n".join(block.get("text", "") for block in system)
        messages = request["messages"]
        role = ROLE_PATTERN.search(system)
        root = ROOT_PATTERN.search(system)
        first = _text(messages[0])
        issue = ISSUE_PATTERN.search(first)
        title = TITLE_PATTERN.search(first)
        revision = REVISION_PATTERN.search(first)
        feedback = first.split("asked for changes:", 1)[1].split("The previous round", 1)[0].strip() \
            if revision else ""
        continuing = messages[-1]["role"] == "assistant"
        last: Any = next((m["content"] for m in reversed(messages) if m["role"] == "user"), [])
        results = [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"] \
            if isinstance(last, list) else []
        taken = [m for m in messages if m["role"] == "assistant" and not was_cut(m)]
        return cls(
            role=role.group(1) if role else "",
            root=root.group(1) if root else ".",
            issue_number=int(issue.group(2)) if issue else 0,
            title=title.group(1).strip() if title else "",
            directives=Directives.parse(first),
            revision=int(revision.group(1)) if revision else 0,
            feedback=feedback,
            turn=len(taken) - (1 if continuing and taken and taken[-1] is messages[-1] else 0),
            last_result=results[-1] if results else None,
            continuing=continuing,
            conversation=hashlib.sha256((system + first).encode()).hexdigest()[:16],
            follow_up="review" if REVIEW_PATTERN.search(first) else "checks" if CHECKS_PATTERN.search(first) else "",
            remarks=tuple((author, path or "", int(line or 0), text.strip())
                          for author, path, line, text in REMARK_PATTERN.findall(first)),
            failed_checks=tuple(name.strip() for name in FAILED_CHECK_PATTERN.findall(first)),
            answered=bool(ANSWERS_PATTERN.search(first)),
        )

    @property
    def last_failed(self) -> bool:
        return bool(self.last_result and self.last_result.get("is_error"))


def _text(message: Mapping[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(block.get("text", "") for block in content if block.get("type") == "text")


# An action is ("bash", input) / ("edit", input) / ("tool", name, input) / ("say", text).
Action = tuple[Any, ...]


def bash(command: str) -> Action:
    return ("tool", "bash", {"command": command})


def edit(**tool_input: Any) -> Action:
    return ("tool", "str_replace_based_edit_tool", tool_input)


def say(text: str) -> Action:
    return ("say", text)


def follow_up(s: Situation, solution: Solution | None) -> list[Action]:
    """The Architect on a follow-up: a note where each remark points, or on the checks it fixed; then the tests."""
    module = solution.module_path if solution else f"docs/issue-{s.issue_number}.md"

    def note(path: str, line: int, text: str) -> Action:
        comment = "#" if path.endswith(".py") else "-"  # a line that changes nothing the tests see
        return edit(command="insert", path=path, insert_line=line, insert_text=f"{comment} {text}")

    if s.follow_up == "review":
        notes = [note(path or module, line if path else 0, f"Review by @{author}: {text[:80]}")
                 for author, path, line, text in s.remarks]
        done = f"Answered {len(s.remarks)} review remarks in place."
    else:
        checks = ", ".join(s.failed_checks) or "the failing checks"
        notes = [note(module, 0, f"Fixed for CI: {checks}")]
        done = f"Fixed what made {checks} fail."
    return notes + [bash(TEST_COMMAND), say(f"{done} The tests pass.")]


def architect(s: Situation, solution: Solution | None) -> list[Action]:
    d = s.directives
    if s.follow_up and not s.revision:
        return follow_up(s, solution)
    if d.clarify and not s.answered:
        return [("tool", "request_clarification", {"questions": "- Which module should this live in?\n"
                                                                 "- What should happen with empty input?"
                                                                 + (f"\n- {d.leak}" if d.leak else "")})]
    hostile = [("tool", attack.tool, attack.input) for attack in attacks(d.hostile, d.ports)] if d.hostile else []
    look = hostile + [edit(command="view", path=s.root)] + [bash("ls -la && git log --oneline -3")] * d.extra_turns
    extra = [bash(d.run)] if d.run else []
    if d.leak:
        extra.append(edit(command="create", path="leak.txt", file_text=f"{d.leak}\n"))
    if solution is None:
        notes = f"docs/issue-{s.issue_number}.md"
        work = [edit(command="create", path=notes, file_text=f"# {s.title}\n\nNotes on issue #{s.issue_number}.\n")]
        return look + work + extra + [say(f"Wrote {notes} for this issue.")]
    if s.revision:
        revised = [edit(command="insert", path=solution.module_path, insert_line=0,
                        insert_text=f"# Revision {s.revision}: {s.feedback.splitlines()[0][:100]}")]
        return revised + [bash(TEST_COMMAND)] + extra + [
            say(f"Applied the Product Owner's feedback to {solution.module_path}; the tests still pass.")]
    return look + [
        edit(command="create", path=solution.module_path, file_text=solution.code),
        bash(TEST_COMMAND),
        *extra,
        say(f"Implemented `{solution.function}` in {solution.module_path}; the existing tests pass."),
    ]


def security(s: Situation, solution: Solution | None) -> list[Action]:
    return [bash("git status --short && git diff"),
            say("Reviewed the change: a pure function on its input, no I/O, no eval, no secrets. Nothing to fix.")]


def tester(s: Situation, solution: Solution | None) -> list[Action]:
    if solution is None:
        return [bash(TEST_COMMAND), say("No code changed; the existing tests pass.")]
    outcome = "fail; see the output above" if s.last_failed and s.turn >= 2 else "pass"
    return [edit(command="create", path=solution.test_path, file_text=solution.test), bash(TEST_COMMAND),
            say(f"Added {solution.test_path} covering `{solution.function}` and its edge cases; "
                f"`{TEST_COMMAND}` ran and the tests {outcome}.")]


def product_owner(s: Situation, solution: Solution | None) -> list[Action]:
    wanted = s.directives.po[min(s.revision, len(s.directives.po) - 1)]
    if s.turn >= 1 and s.last_failed and wanted == "APPROVE":
        decision = {"decision": "REVISE", "feedback": "The test suite fails; make it pass."}
    else:
        feedback = {"APPROVE": "Resolves the issue; tests pass.",
                    "REVISE": "Close, but document the edge cases in the module.",
                    "REJECT": "This is out of scope for textkit; we will not add it."}[wanted]
        decision = {"decision": wanted, "feedback": feedback}
    return [bash(TEST_COMMAND), ("tool", "submit_decision", decision)]


SCRIPTS = {"Architect": architect, "Security reviewer": security, "Tester": tester, "Product Owner": product_owner}


@dataclass(frozen=True)
class ScriptStep:
    """What the role does next, and the stop reason the issue's directives ask this step to end with."""

    action: Action
    index: int  # which step of its script
    stop: str | None  # asked for by a `stop=` directive (the server makes it happen once)
    key: str  # this step of this conversation, so that each asked-for stop happens once
    continuing: bool  # the rest of a paused turn


def next_step(request: Mapping[str, Any],
              was_cut: Callable[[Mapping[str, Any]], bool] = lambda _: False) -> ScriptStep:
    """The step this role takes next, as the request shows where it is (`was_cut`: a turn that does not count)."""
    s = Situation.read(request, was_cut)
    stops = {step: reason for reason, step in s.directives.stops}
    asked = stops.get(s.turn) if s.role == "Architect" and not s.revision and not s.continuing else None
    return ScriptStep(next_action(s), s.turn, asked, f"{s.conversation}#{s.turn}", s.continuing)


def next_action(s: Situation) -> Action:
    """The action the role takes at this step; past the end of its script it summarises and stops."""
    script = SCRIPTS.get(s.role)
    if script is None:
        return say("I can only play the roles asm gives me.")
    actions = script(s, solution_for(s.title))
    return actions[s.turn] if s.turn < len(actions) else actions[-1] if actions[-1][0] == "say" \
        else say("Done.")
