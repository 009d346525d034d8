"""The team at work: performs one workflow step by running that role's agent in the workspace."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from asm.agent import Agent, Completer, Meter
from asm.roles import CLARIFY_TOOL, DECISION_TOOL
from asm.tools import (
    BASH_TOOL,
    EDITOR_TOOL,
    EDITOR_TOOL_NAME,
    BashTool,
    EditorTool,
    Workspace,
)
from asm.workflow import RoleOutput, Step


def task_text(step: Step, notes: tuple[tuple[str, str], ...]) -> str:
    """The user turn that starts a role: the round, the PO's feedback, the notes of earlier roles."""
    parts = []
    if step.revision:
        parts.append(
            f"Revision {step.revision}. The Product Owner reviewed the previous round and asked for changes:\n\n"
            f"{step.feedback}\n\nThe previous round's work is still in the working tree."
        )
    if notes:
        parts.append("Notes from the team in this round:\n\n" + "\n\n".join(f"### {who}\n{text}" for who, text in notes))
    parts.append(f"Now do your part as the {step.role.title}.")
    return "\n\n".join(parts)


class Team:
    """Runs roles for one issue: same model, meter, workspace and issue, one agent per step."""

    def __init__(self, model: Completer, meter: Meter, workspace: Workspace, context: Mapping[str, str],
                 max_turns: int, transcripts: Path | None = None) -> None:
        self.model = model
        self.meter = meter
        self.workspace = workspace
        self.context = context
        self.max_turns = max_turns
        self.transcripts = transcripts
        self.turns = 0
        self.tool_seconds = 0.0

    def perform(self, step: Step, notes: tuple[tuple[str, str], ...]) -> RoleOutput:
        tools = {"bash": BashTool(self.workspace), EDITOR_TOOL_NAME: EditorTool(self.workspace)}
        transcript = self.transcripts / f"{step.revision}-{step.role.name}.json" if self.transcripts else None
        agent = Agent(self.model, tools, [BASH_TOOL, EDITOR_TOOL], self.meter, self.max_turns, transcript)
        result = agent.run(step.role.system_prompt(self.context), task_text(step, notes), step.role.final_tools)
        self.turns += result.turns
        self.tool_seconds += result.tool_seconds
        if result.final_tool == DECISION_TOOL.name:
            decision, feedback = str(result.final_input["decision"]), str(result.final_input["feedback"])
            return RoleOutput(result.summary or f"{decision}: {feedback}", decision, feedback)
        if result.final_tool == CLARIFY_TOOL.name:
            return RoleOutput(result.summary, questions=str(result.final_input["questions"]))
        return RoleOutput(result.summary or "(no summary)")
