"""The issue key `owner/name#n` and every name derived from it."""

from __future__ import annotations

import pytest

from asm.errors import BadInput
from asm.keys import IssueRef


@pytest.mark.parametrize("number", ["12", "#12", " 12 ", 12])
def test_parse_accepts_a_number_with_or_without_hash(number: str | int) -> None:
    assert IssueRef.parse("acme/shop", number) == IssueRef("acme/shop", 12)


@pytest.mark.parametrize("repo", ["acme/shop", "Acme-Corp/web.site", "a1/b_c-d.e"])
def test_parse_accepts_owner_slash_name(repo: str) -> None:
    assert IssueRef.parse(repo, "1").repo == repo.lower()  # GitHub ignores the case: one spelling for every key


def test_every_spelling_of_a_repository_is_one_issue() -> None:
    assert IssueRef("Acme-Corp/Web", 3) == IssueRef("acme-corp/web", 3)
    assert IssueRef("Acme-Corp/Web", 3).claim_key == "asm:claim:acme-corp/web#3"


@pytest.mark.parametrize("repo", ["", "shop", "acme/", "/shop", "acme/shop/extra", "ac me/shop", "acme/sh op",
                                  "-acme/shop", "acme\\shop", "https://github.com/acme/shop"])
def test_parse_rejects_a_repo_not_in_owner_name_form(repo: str) -> None:
    with pytest.raises(BadInput, match="owner/name"):
        IssueRef.parse(repo, "1")


@pytest.mark.parametrize("number", ["", "abc", "0", "-1", "1.5", "12a", "#", "1e3", "0x10", " "])
def test_parse_rejects_what_is_not_a_positive_number(number: str) -> None:
    with pytest.raises(BadInput, match="positive number"):
        IssueRef.parse("acme/shop", number)


def test_parse_rejects_a_superscript_digit_with_bad_input() -> None:
    with pytest.raises(BadInput):
        IssueRef.parse("acme/shop", "²")


def test_parse_rejects_a_repo_with_a_trailing_newline() -> None:
    with pytest.raises(BadInput):
        IssueRef.parse("acme/shop\n", "1")


def test_every_derived_name() -> None:
    issue = IssueRef.parse("acme/shop", "#12")

    assert issue.key == "acme/shop#12"
    assert str(issue) == "acme/shop#12"
    assert issue.owner == "acme"
    assert issue.branch == "ai-feature/issue-12"
    assert issue.claim_key == "asm:claim:acme/shop#12"
    assert issue.workspace_name == "acme__shop/issue-12"


def test_workspaces_of_same_named_repos_of_two_owners_differ() -> None:
    assert IssueRef("acme/shop", 1).workspace_name != IssueRef("other/shop", 1).workspace_name


def test_issue_refs_are_values() -> None:
    assert IssueRef("acme/shop", 2) == IssueRef.parse("acme/shop", "2")
    assert len({IssueRef("acme/shop", 2), IssueRef("acme/shop", 2)}) == 1
    assert sorted([IssueRef("acme/shop", 10), IssueRef("acme/shop", 2)])[0].number == 2
