"""The README's layout table names every module of asm's, and nothing that is not there."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Layout"):]
    return section[section.index("```") + 3:section.index("```", section.index("```") + 3)]


def modules() -> list[Path]:
    found = [*ROOT.joinpath("asm").rglob("*.py"), *ROOT.joinpath("tasks").glob("*.py")]
    return sorted(path.relative_to(ROOT) for path in found if path.name != "__init__.py")


def test_every_module_is_in_the_readme_layout() -> None:
    lines = layout_block().splitlines()
    missing = []
    for module in modules():
        # Named where its package is drawn: on the package's line or the lines that continue it.
        package = f"{module.parent}/" if module.parent != Path("asm") else str(module)
        if module.parent == Path("asm"):
            if not any(line.startswith(package) for line in lines):
                missing.append(str(module))
            continue
        start = next((i for i, line in enumerate(lines) if line.startswith(package)), None)
        if start is None:
            missing.append(str(module))
            continue
        end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
        drawn = " ".join(lines[start:end])
        if not any(fnmatch.fnmatch(module.name, pattern) for pattern in re.findall(r"[\w*]+\.py", drawn)):
            missing.append(str(module))
    assert not missing, f"not in the README's layout: {missing}"


def test_the_readme_layout_names_nothing_that_is_not_there() -> None:
    names = {path.name for path in modules()} | {"__init__.py", "beat_schedule.py"}
    drawn = set(re.findall(r"\b[\w]+\.py\b", layout_block()))
    assert drawn <= names, f"in the README's layout but not in the tree: {sorted(drawn - names)}"
    for directory in re.findall(r"^(\S+)/\s", layout_block(), flags=re.MULTILINE):
        assert (ROOT / directory).is_dir(), directory
