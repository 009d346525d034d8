"""The scrum team: each role is a prompt file plus the final tool it may answer with."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from asm.agents.loop import FinalTool

DECISIONS = ("APPROVE", "REVISE", "REJECT")


def _decision_problem(tool_input: Mapping[str, Any]) -> str | None:
    if tool_input.get("decision") not in DECISIONS:
        return f"decision must be one of {', '.join(DECISIONS)}"
    feedback = tool_input.get("feedback")
    if not isinstance(feedback, str) or (tool_input["decision"] != "APPROVE" and not feedback.strip()):
        return "feedback is required: say what must change (REVISE) or why (REJECT)"
    return None


def _questions_problem(tool_input: Mapping[str, Any]) -> str | None:
    questions = tool_input.get("questions")
    return None if isinstance(questions, str) and questions.strip() else "questions must be a non-empty text"


DECISION_TOOL = FinalTool(
    name="submit_decision",
    description="Give the Product Owner's verdict on the change. Call it exactly once, when you have decided.",
    input_schema={
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": list(DECISIONS)},
            "feedback": {"type": "string", "description": "What must change (REVISE), why (REJECT), or a note."},
        },
        "required": ["decision", "feedback"],
    },
    validate=_decision_problem,
    required=True,
)

CLARIFY_TOOL = FinalTool(
    name="request_clarification",
    description="Stop and ask the issue's author questions, when the issue cannot be implemented without answers.",
    input_schema={
        "type": "object",
        "properties": {"questions": {"type": "string", "description": "The questions, in Markdown."}},
        "required": ["questions"],
    },
    validate=_questions_problem,
)


@dataclass(frozen=True)
class Role:
    """One member of the team."""

    name: str
    title: str
    final_tools: tuple[FinalTool, ...] = ()

    def system_prompt(self, context: Mapping[str, str]) -> str:
        """The common ground rules and the issue, then this role's instructions."""
        template = _read("common.md") + "\n" + _read(f"{self.name}.md")
        values = {**context, "role": self.title}
        # One pass over the template, not str.format: issue bodies are full of braces.
        return re.sub(r"\{(\w+)\}", lambda match: values.get(match.group(1), match.group(0)), template)


ARCHITECT = Role("architect", "Architect", (CLARIFY_TOOL,))
SECURITY = Role("security", "Security reviewer")
TESTER = Role("tester", "Tester")
PRODUCT_OWNER = Role("po", "Product Owner", (DECISION_TOOL,))
TEAM = (ARCHITECT, SECURITY, TESTER, PRODUCT_OWNER)


def _read(name: str) -> str:
    return resources.files("asm.agents.prompts").joinpath(name).read_text()
