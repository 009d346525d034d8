"""The REST routes of commits, their check runs and statuses, and GitHub Actions job logs.

A base class of `GitHubApi`: `ROUTES` joins its table. A `{ref}` is a commit sha or a branch.
A job's log is served as GitHub serves it: a 302 to a short-lived signed URL that needs no token,
which the sandbox answers itself (`PUBLIC_ROUTES`), as plain text.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from asm.sandbox import github_git as git
from asm.sandbox import github_payloads_checks as payloads
from asm.sandbox.github_checks import ACTIONS_APP
from asm.sandbox.github_records import ApiError, CheckRun, invalid_request, not_found
from asm.sandbox.github_rest import REPO, Reply, Request, json_fields, paged
from asm.sandbox.github_state import GitHubState

_RUN = REPO + r"/check-runs/(?P<check_run_id>\d+)"


class CheckRoutes:
    """A commit; check runs (create, update, get, per commit), statuses (create, list, combined); job logs."""

    state: GitHubState
    ROUTES = [
        ("POST", REPO + r"/check-runs", "create_check_run"),
        ("GET", _RUN, "get_check_run"),
        ("PATCH", _RUN, "update_check_run"),
        ("GET", _RUN + r"/annotations", "check_run_annotations"),
        ("GET", REPO + r"/commits/(?P<ref>.+)/check-runs", "list_check_runs"),
        ("POST", REPO + r"/statuses/(?P<ref>.+)", "create_status"),
        ("GET", REPO + r"/statuses/(?P<ref>.+)", "list_statuses"),  # the older path PyGithub still uses
        ("GET", REPO + r"/commits/(?P<ref>.+)/statuses", "list_statuses"),
        ("GET", REPO + r"/commits/(?P<ref>.+)/status", "combined_status"),
        ("GET", REPO + r"/actions/jobs/(?P<job_id>\d+)/logs", "job_logs"),
        ("GET", REPO + r"/commits/(?P<ref>.+)", "get_commit"),  # after the routes under a commit: `.+` takes all
    ]
    PUBLIC_ROUTES = [("GET", r"/_sandbox/logs" + REPO.removeprefix("/repos") + r"/(?P<job_id>\d+)", "job_log_text")]

    def get_commit(self, request: Request, full_name: str, ref: str) -> Reply:
        info = git.commit_info(self.state.repo(full_name).path, self.state.commit_sha(full_name, ref))
        return Reply(200, payloads.commit(request.api, self.state, full_name, info))

    # -- check runs -----------------------------------------------------------------------------

    def create_check_run(self, request: Request, full_name: str) -> Reply:
        given = json_fields(request)
        missing = [name for name in ("name", "head_sha") if not given.get(name)]
        if missing:
            raise invalid_request(*missing)
        # A real check run belongs to the GitHub App whose token made it; the sandbox names the app after the actor.
        run_id = self.state.create_check_run(
            full_name, str(given["head_sha"]), str(given["name"]), status=given.get("status") or "queued",
            conclusion=given.get("conclusion"), app=request.actor, details_url=given.get("details_url"),
            external_id=given.get("external_id") or "", started_at=given.get("started_at"),
            completed_at=given.get("completed_at"), **_output(given),
        )
        return Reply(201, self._run_json(request, full_name)(self.state.check_run(full_name, run_id)))

    def update_check_run(self, request: Request, full_name: str, check_run_id: str) -> Reply:
        given = json_fields(request)
        changes = {key: given[key] for key in ("name", "status", "conclusion", "details_url", "external_id",
                                               "started_at", "completed_at") if key in given}
        record = self.state.update_check_run(full_name, int(check_run_id), **changes, **_output(given))
        return Reply(200, self._run_json(request, full_name)(record))

    def get_check_run(self, request: Request, full_name: str, check_run_id: str) -> Reply:
        return Reply(200, self._run_json(request, full_name)(self.state.check_run(full_name, int(check_run_id))))

    def check_run_annotations(self, request: Request, full_name: str, check_run_id: str) -> Reply:
        self.state.check_run(full_name, int(check_run_id))  # 404 for a run that does not exist
        return paged(request, [], lambda annotation: annotation)  # the sandbox's runs carry no annotations

    def list_check_runs(self, request: Request, full_name: str, ref: str) -> Reply:
        runs = self.state.check_runs(full_name, self.state.commit_sha(full_name, ref))
        query = request.query
        runs = [run for run in runs if query.get("check_name") in (None, run.name)
                and query.get("status") in (None, run.status)]
        if query.get("filter", "latest") == "latest":  # GitHub's default: the newest run of each name
            runs = list({(run.app, run.name): run for run in runs}.values())
        runs.sort(key=lambda run: run.id, reverse=True)
        return paged(request, runs, self._run_json(request, full_name), key="check_runs")

    def _run_json(self, request: Request, full_name: str) -> Callable[[CheckRun], dict[str, Any]]:
        heads = self.state.branch_heads(full_name)
        return lambda record: payloads.check_run(request.api, self.state, full_name, record, heads)

    # -- commit statuses ------------------------------------------------------------------------

    def create_status(self, request: Request, full_name: str, ref: str) -> Reply:
        given = json_fields(request)
        if not given.get("state"):
            raise invalid_request("state")
        record = self.state.create_status(full_name, ref, given.get("context") or "default", str(given["state"]),
                                          given.get("description") or "", given.get("target_url") or "",
                                          creator=request.actor)
        return Reply(201, payloads.status(request.api, self.state, full_name, record))

    def list_statuses(self, request: Request, full_name: str, ref: str) -> Reply:
        records = self.state.statuses(full_name, self.state.commit_sha(full_name, ref))
        return paged(request, records, lambda record: payloads.status(request.api, self.state, full_name, record))

    def combined_status(self, request: Request, full_name: str, ref: str) -> Reply:
        sha = self.state.commit_sha(full_name, ref)
        return Reply(200, payloads.combined_status(request.api, self.state, full_name, sha, request.actor))

    # -- GitHub Actions job logs ----------------------------------------------------------------

    def job_logs(self, request: Request, full_name: str, job_id: str) -> Reply:
        run = self._job(full_name, int(job_id))
        token = self.state.log_token(run.id)
        return Reply(302, None, {"Location": f"{request.api}/_sandbox/logs/{full_name}/{run.id}?token={token}"})

    def job_log_text(self, request: Request, full_name: str, job_id: str) -> Reply:
        run = self._job(full_name, int(job_id))
        if not hmac.compare_digest(request.query.get("token", ""), self.state.log_token(run.id)):
            return Reply(403, "AuthenticationFailed: the log URL's signature does not match\n")
        return Reply(200, run.log)

    def _job(self, full_name: str, job_id: int) -> CheckRun:
        """The check run behind a GitHub Actions job; 404 for one another app made, as on GitHub."""
        run = self.state.check_run(full_name, job_id)
        if run.app != ACTIONS_APP:
            raise not_found()
        return run


def _output(given: dict[str, Any]) -> dict[str, str]:
    """A check run's `output` object as the state's title, summary and text."""
    output = given.get("output")
    if output is None:
        return {}
    if not isinstance(output, dict):
        raise ApiError(422, "Invalid request.\n\nFor 'properties/output', the value is not an object.")
    return {key: str(output[key]) for key in ("title", "summary", "text") if output.get(key) is not None}
