"""Pull request reviews and their line comments: the part of `GitHubState` that holds review conversations.

A base class of `GitHubState`, sharing its lock, clock, people and id sequence. Reviews live on
the pull request's record (`Pull.reviews`), replaced on change like every record. Line comments
are checked against the real diff of the pull request and quote its hunk, as GitHub's do; a
single comment made on its own gets a COMMENTED review around it, as on GitHub.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from asm.sandbox import github_git as git
from asm.sandbox.github_clock import Clock
from asm.sandbox.github_people import People
from asm.sandbox.github_records import (
    ApiError,
    Issue,
    Pull,
    Repo,
    Review,
    ReviewComment,
    invalid_request,
    not_found,
    unprocessable,
    validation_failed,
)

# The `event` of `POST /pulls/{n}/reviews` -> the state the review is left in.
EVENTS = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
REVIEW_STATES = ("PENDING", "COMMENTED", "APPROVED", "CHANGES_REQUESTED", "DISMISSED")
_HUNK = re.compile(r"@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


class PullReviews:
    """Reviews and review comments on the pull requests of a `GitHubState`."""

    if TYPE_CHECKING:  # provided by GitHubState, which this class is a base of
        _lock: threading.RLock
        _people: People
        clock: Clock

        def _new_id(self) -> int: ...
        def _store(self, full_name: str, record: Issue) -> Issue: ...
        def repo(self, full_name: str) -> Repo: ...
        def pull_record(self, full_name: str, number: int) -> Issue: ...
        def pull_records(self, full_name: str, state: str = "open", head: str = "", base: str = "") -> list[Issue]: ...

    # -- seeding (tests, demo) and what the API writes ------------------------------------------

    def submit_review(
        self,
        full_name: str,
        number: int,
        author: str,
        state_or_event: str | None,
        body: str = "",
        comments: Sequence[Mapping[str, Any]] = (),
        commit_id: str | None = None,
    ) -> Review:
        """`author` reviews pull request `number`, with line `comments` ({"path", "line", "body"}).

        `state_or_event` is an event of the REST API (APPROVE, REQUEST_CHANGES, COMMENT) or a
        review state (APPROVED, ...); None or PENDING leaves the review pending. GitHub's 422s
        apply: no approving or requesting changes on one's own pull request, a body to request
        changes or to comment without line comments, one pending review per person, lines in the diff.
        """
        state = EVENTS.get(state_or_event or "PENDING", state_or_event or "PENDING")
        if state not in REVIEW_STATES:
            raise ValueError(f"a review is one of {', '.join([*EVENTS, *REVIEW_STATES])}, not {state_or_event!r}")
        with self._lock:
            author = self._people.known(author)
            record = self.pull_record(full_name, number)
            pull = _pull(record)
            if author.lower() == record.author.lower() and state == "APPROVED":
                raise unprocessable("Can not approve your own pull request")
            if author.lower() == record.author.lower() and state == "CHANGES_REQUESTED":
                raise unprocessable("Can not request changes on your own pull request")
            if not body and (state == "CHANGES_REQUESTED" or (state == "COMMENTED" and not comments)):
                event = "REQUEST_CHANGES" if state == "CHANGES_REQUESTED" else "COMMENT"
                raise unprocessable(f"Body is required when using the {event} event")
            if state == "PENDING" and any(r.state == "PENDING" and r.author == author for r in pull.reviews):
                raise unprocessable("User can only have one pending review per pull request")
            commit = self._commit_of(full_name, record, commit_id, in_review=True)
            review_id = self._new_id()
            now = self.clock.iso()
            made = tuple(
                self._line_comment(full_name, pull, commit, review_id, author, _text(c, "body"), _text(c, "path"),
                                   _line(c.get("line")), now, in_review=True)
                for c in comments
            )
            review = Review(review_id, author, state, body or "", None if state == "PENDING" else now, commit, now,
                            made)
            self._store(full_name, replace(record, pull=replace(pull, reviews=pull.reviews + (review,))))
            return review

    def add_review_comment(
        self,
        full_name: str,
        number: int,
        author: str,
        body: str,
        path: str,
        line: int | None,
        in_reply_to: int | None = None,
        commit_id: str | None = None,
    ) -> ReviewComment:
        """One line comment (or, with `in_reply_to`, a reply in that comment's thread) in a review of its own."""
        if not body:
            raise invalid_request("body")
        with self._lock:
            author = self._people.known(author)
            record = self.pull_record(full_name, number)
            pull = _pull(record)
            review_id = self._new_id()
            now = self.clock.iso()
            if in_reply_to is not None:
                parent = next((c for r in pull.reviews for c in r.comments if c.id == in_reply_to), None)
                if parent is None:
                    raise not_found()
                commit = parent.commit_id
                root = parent.in_reply_to_id or parent.id  # GitHub threads every reply under the first comment
                comment = replace(parent, id=self._new_id(), review_id=review_id, author=author, body=body,
                                  in_reply_to_id=root, created_at=now)
            else:
                commit = self._commit_of(full_name, record, commit_id, in_review=False)
                comment = self._line_comment(full_name, pull, commit, review_id, author, body, path, line, now,
                                             in_review=False)
            review = Review(review_id, author, "COMMENTED", "", now, commit, now, (comment,))
            self._store(full_name, replace(record, pull=replace(pull, reviews=pull.reviews + (review,))))
            return comment

    # -- reading --------------------------------------------------------------------------------

    def head_sha(self, full_name: str, number: int) -> str:
        """The pull request's head commit: the branch's tip while the branch exists."""
        record = self.pull_record(full_name, number)
        pull = _pull(record)
        return git.rev_parse(self.repo(full_name).path, pull.head) or pull.head_sha

    def reviews(self, full_name: str, number: int, viewer: str | None = None) -> list[Review]:
        """The pull request's reviews, oldest first; given a `viewer`, only the pending ones that are theirs."""
        found = _pull(self.pull_record(full_name, number)).reviews
        return [r for r in found if viewer is None or r.state != "PENDING" or r.author.lower() == viewer.lower()]

    def review(self, full_name: str, number: int, review_id: int, viewer: str | None = None) -> Review:
        for review in self.reviews(full_name, number, viewer):
            if review.id == review_id:
                return review
        raise not_found()

    def review_comments(self, full_name: str, number: int, viewer: str | None = None) -> list[ReviewComment]:
        """Every line comment on the pull request, oldest first (those of others' pending reviews hidden)."""
        return sorted((c for r in self.reviews(full_name, number, viewer) for c in r.comments), key=lambda c: c.id)

    def review_comment(self, full_name: str, comment_id: int, viewer: str | None = None) -> tuple[int, ReviewComment]:
        """A line comment anywhere in the repository, with the number of its pull request."""
        with self._lock:
            for record in self.pull_records(full_name, "all"):
                for comment in self.review_comments(full_name, record.number, viewer):
                    if comment.id == comment_id:
                        return record.number, comment
        raise not_found()

    # -- internals ------------------------------------------------------------------------------

    def _commit_of(self, full_name: str, record: Issue, commit_id: str | None, in_review: bool) -> str:
        """What a review or comment is made on: `commit_id` if it is one of the pull request's, else the head."""
        head = self.head_sha(full_name, record.number)
        if not commit_id:
            return head
        path = self.repo(full_name).path
        full = git.resolve(path, commit_id)
        if full is None or not git.is_ancestor(path, full, head):
            raise _thread_error("commit_id", "is not part of the pull request", in_review)
        return full

    def _line_comment(self, full_name: str, pull: Pull, commit: str, review_id: int, author: str, body: str,
                      path: str, line: int | None, now: str, in_review: bool) -> ReviewComment:
        """A new comment on `path` at `line` of `commit` (None: the whole file), quoting its hunk."""
        if not path:
            raise _thread_error("path", "is missing", in_review)
        if not body:
            raise invalid_request("body") if not in_review else unprocessable("Body can't be blank")
        try:
            changes = git.diff(self.repo(full_name).path, pull.base, commit, path)
        except git.GitFailed:
            changes = ""
        if not changes:
            raise _thread_error("path", "is invalid", in_review)
        hunk = diff_hunk(changes, line)
        if hunk is None:
            raise _thread_error("line", "must be part of the diff", in_review)
        return ReviewComment(self._new_id(), review_id, author, body, path, line, line, "RIGHT", commit, hunk, None,
                             now)


def diff_hunk(changes: str, line: int | None) -> str | None:
    """The part of a file's diff that GitHub quotes for a comment on `line` (new side): its hunk, cut after it.

    A comment on the whole file (`line` None) quotes the first hunk; None when `line` is in no hunk.
    """
    hunks: list[list[str]] = []
    for text in changes.splitlines():
        if _HUNK.match(text):
            hunks.append([text])
        elif hunks:
            hunks[-1].append(text)
    if line is None:
        return "\n".join(hunks[0]) if hunks else None
    for hunk in hunks:
        match = _HUNK.match(hunk[0])
        assert match is not None  # every hunk starts with its header
        at = int(match.group(1))
        for index, text in enumerate(hunk[1:], start=1):
            if text.startswith("-") or text.startswith("\\"):
                continue  # a removed line, or "\ No newline at end of file": not on the new side
            if at == line:
                return "\n".join(hunk[: index + 1])
            at += 1
    return None


def _thread_error(field: str, problem: str, in_review: bool) -> ApiError:
    """GitHub words a bad line comment one way inside a review, another way on its own."""
    if in_review:
        return unprocessable(f"Pull request review thread {field} {problem}")
    name = f"pull_request_review_thread.{field}"
    return validation_failed("PullRequestReviewComment", "custom", name, f"{name} {problem}")


def _pull(record: Issue) -> Pull:
    assert record.pull is not None  # pull_record returns pull requests only
    return record.pull


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def _line(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_request(reason=f"For 'properties/line', {json.dumps(value)} is not an integer.")
    return value
