"""Private files: written whole or not at all, readable by their owner only, never through a link."""

from __future__ import annotations

import os
from pathlib import Path

from asm.files import write_private


def test_a_private_file_is_made_with_its_directories_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "t.json"

    write_private(path, "one")

    assert path.read_text() == "one"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700 and path.parent.stat().st_mode & 0o777 == 0o700


def test_rewriting_replaces_the_file_in_one_step_and_leaves_no_draft(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    write_private(path, "first, and longer")
    before = path.stat().st_ino

    write_private(path, "second")

    assert path.read_text() == "second"
    assert path.stat().st_ino != before  # a new file renamed over the old: a reader sees one or the other
    assert sorted(os.listdir(tmp_path)) == ["t.json"]


def test_an_older_file_open_to_others_is_replaced_by_an_owner_only_one(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("old")
    path.chmod(0o644)

    write_private(path, "new")

    assert path.stat().st_mode & 0o777 == 0o600


def test_a_link_planted_at_the_path_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    path = tmp_path / "t.json"
    path.symlink_to(target)

    write_private(path, "written")

    assert target.read_text() == "untouched"
    assert not path.is_symlink() and path.read_text() == "written"
