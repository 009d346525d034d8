"""The `asm` command: enqueue, scan, status, transcript, resume, up, webhook, demo, bench.

Every failure a person can cause or fix ends in one line on stderr and a non-zero exit:
2 for bad input or settings, 1 for a service that cannot be reached or refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

import redis
import requests

from asm.config import Settings, load_settings, require, without_password
from asm.errors import AsmError, BadInput, ConfigError
from asm.keys import IssueRef
from asm.sandbox.model_server import STYLES as MODEL_STYLES

if TYPE_CHECKING:
    from asm.github import GitHub

VOUCHED_SECONDS = 30 * 24 * 3600  # until the run it asked for ends, or a month


class Refused(AsmError):
    """The command is understood, but the fleet's state says no (paused, resting)."""


class NotRecorded(AsmError):
    """What was asked for is not in Redis (never recorded, or expired)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def _load_settings() -> Settings:
    """The command's settings, loaded once; the Celery app it queues through is configured from them."""
    settings = load_settings()
    from asm.celery_app import use_settings

    use_settings(settings)
    return settings


def _redis(settings: Settings) -> redis.Redis[bytes]:
    """Redis, reached now: a person waits on the answer, so an unreachable one is said at once."""
    from asm.deps import redis_client

    client = redis_client(settings.redis_url, patient=False)
    try:
        client.ping()
    except redis.RedisError as problem:
        raise ConnectionError(f"cannot reach Redis at {without_password(settings.redis_url)} ({problem})") from None
    return client


def _github(settings: Settings, client: redis.Redis[bytes]) -> GitHub:
    """GitHub as the fleet reaches it: a GitHub App's tokens are the fleet's (its ETags are theirs)."""
    from asm.deps import github_gateway

    require(settings, "github")
    return github_gateway(settings, fleet=client)


# -- commands ---------------------------------------------------------------------------------


def cmd_enqueue(options: argparse.Namespace) -> int:
    """Queue one issue now, with the same de-duplication as the scan."""
    settings = _load_settings()
    repo = options.repo
    if repo is None:
        if len(settings.repos) != 1:
            raise BadInput("say which repository with --repo owner/name (ASM_REPOS "
                           + ("is not set)" if not settings.repos else "has several)"))
        repo = settings.repos[0]
    issue = IssueRef.parse(repo, options.issue)
    client = _redis(settings)
    github = _github(settings, client)
    refused = github.refuses(repo, settings.repos)  # ASM_REPOS; as a GitHub App, its installations' too
    if refused:
        raise BadInput(f"{repo} {refused} (ASM_REPOS: {', '.join(settings.repos) or 'unset'}); "
                       "asm works only the repositories it is set up for")
    info = github.issue(issue)
    if info.is_pull:
        raise BadInput(f"{issue} is a pull request, not an issue")
    if info.state != "open":
        raise BadInput(f"{issue} is closed")
    from asm.celery_app import app
    from asm.fleet.hold import fleet_hold
    from asm.fleet.queue import claimed_or_queued, enqueue
    from asm.fleet.scan import FollowRules
    from asm.github import IN_PROGRESS, IN_REVIEW
    from asm.guard.trust import digest
    from asm.keys import vouched_key

    if IN_REVIEW in info.labels:
        raise BadInput(f"{issue} is already in review (labelled {IN_REVIEW})")
    hold = fleet_hold(client)
    if hold is not None:
        raise Refused(f"nothing queued: {hold.reason}")
    # The operator's act: the issue's text as it is now counts as vouched for, whoever labelled it.
    vouched = {"title_digest": digest(info.title), "body_digest": digest(info.body)}
    client.set(vouched_key(issue), json.dumps(vouched), ex=VOUCHED_SECONDS)
    task_id = None
    if not claimed_or_queued(client, issue, settings.task_time_limit):
        # The worker takes only issues labelled ready (or orphaned in-progress ones): label it so.
        if not {settings.ready_label, IN_PROGRESS} & info.labels:
            github.move_labels(issue, settings.ready_label, (), info.labels)
        task_id = enqueue(client, app, issue, by="asm enqueue", stale_after=settings.task_time_limit,
                          priority=FollowRules.of(settings).priorities.of(info.labels))
    if task_id is None:
        print(f"{issue} is already queued or being worked on; nothing added")
    else:
        print(f"queued {issue} ({info.title}) as task {task_id}")
    return 0


def cmd_scan(options: argparse.Namespace) -> int:
    """One scan now: queue every ready or orphaned issue of ASM_REPOS."""
    settings = _load_settings()
    require(settings, "github", "repos")
    client = _redis(settings)
    github = _github(settings, client)
    from asm.celery_app import app
    from asm.fleet.scan import FollowRules, scan

    for repo in settings.repos:  # every repository must exist before anything is queued
        github.repo(repo)
    result = scan(github, client, app, settings.repos, settings.ready_label, settings.task_time_limit,
                  FollowRules.of(settings), settings.scan_interval)
    if result.held:
        raise Refused(f"nothing queued: {result.held}")
    for item in result.found:
        verb = f"queued as {item.task_id}" if item.task_id else "already queued or running"
        print(f"{item.issue} {verb} ({item.why}): {item.title}")
    queued = sum(1 for item in result.found if item.task_id)
    scanned = github.repositories(settings.repos)  # as a GitHub App, its installations' (narrowed by ASM_REPOS)
    print(f"{queued} queued, {len(result.found) - queued} already in hand, "
          f"{len(scanned) - len(result.failed) - len(result.skipped)} of {len(scanned)} repositories scanned "
          f"({len(result.unchanged)} unchanged since the last read: 304s, free)")
    if result.paced:
        print(f"asm scan: paced, {len(result.skipped)} left for the next scan: {result.paced}", file=sys.stderr)
    for repo, why in result.failed.items():
        print(f"asm scan: {repo}: {why}", file=sys.stderr)
    return 1 if result.failed else 0


def cmd_status(options: argparse.Namespace) -> int:
    """The fleet: workers, queued and running issues, spend and caps."""
    settings = _load_settings()
    client = _redis(settings)
    from asm.observe.dashboard import render
    from asm.observe.fleet_state import read_fleet_state

    while True:
        state = read_fleet_state(client, settings)
        if options.json:
            print(json.dumps(state.as_json(), indent=2))
        else:
            if options.watch and sys.stdout.isatty():
                print("\033[2J\033[H", end="")
            print(render(state), flush=True)
        if not options.watch:
            return 0
        time.sleep(options.watch)


def cmd_transcript(options: argparse.Namespace) -> int:
    """A run's conversations (the latest, the one asked for, or all), role by role, from Redis alone."""
    issue = _issue_key(options.issue)
    settings = load_settings()  # Redis is all it needs: no Celery app, token or key
    client = _redis(settings)
    from asm.observe.transcript_view import as_json, render
    from asm.observe.transcripts import Transcripts

    book = Transcripts(client, settings.secrets)
    runs = book.runs(issue)
    if not runs:
        raise NotRecorded(f"no run of {issue} is recorded (transcripts are kept 30 days)")
    wanted = options.run_id or runs[-1].run
    chosen = runs if options.all else [record for record in runs if record.run == wanted]
    if not chosen:
        raise NotRecorded(f"{issue} has no run {wanted} kept; its runs: {', '.join(r.run for r in runs)}")
    shown = [(record, book.conversations(issue, record.run)) for record in chosen]
    print(json.dumps(as_json(issue, shown), indent=2) if options.json else render(issue, shown, len(runs)))
    return 0


def cmd_resume(options: argparse.Namespace) -> int:
    """Let the fleet take issues again after a pause (e.g. once the model account has credit)."""
    settings = _load_settings()
    from asm.fleet.hold import resume_fleet

    reason = resume_fleet(_redis(settings))
    print(f"resumed (was paused: {reason})" if reason else "the fleet was not paused")
    return 0


def cmd_up(options: argparse.Namespace) -> int:
    from asm.commands.up import run_up

    return run_up(_load_settings(), options.concurrency, options.flower_port, options.webhook_port)


def cmd_webhook(options: argparse.Namespace) -> int:
    """GitHub webhooks in: verify each delivery, and queue what it tells as the scan would."""
    settings = _load_settings()
    if not settings.webhook_secret:
        raise ConfigError("ASM_WEBHOOK_SECRET is not set: it is how asm tells GitHub's deliveries from anyone's")
    # ASM_REPOS narrows what it takes; unset (a GitHub App's webhook), the workers refuse what is not installed.
    client = _redis(settings)
    from asm.celery_app import app
    from asm.webhook.server import serve

    # It only sends. With a result backend, Celery would subscribe to every task's result, from every request's
    # thread, and never read one: a server up for weeks would gather subscriptions until Redis dropped them.
    app.conf.result_backend = "disabled"

    handler = logging.StreamHandler()  # a server: its deliveries are its log, one line each
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("asm").addHandler(handler)
    logging.getLogger("asm").setLevel(settings.log_level)
    try:
        return serve(settings, client, app, options.host, options.port)
    except OSError as problem:
        raise ConnectionError(f"cannot listen on {options.host}:{options.port} ({problem.strerror})") from None


def cmd_demo(options: argparse.Namespace) -> int:
    from asm.commands.demo import run_demo

    return run_demo(options.workers, options.issues, options.model_latency, options.model_style)


def cmd_bench(options: argparse.Namespace) -> int:
    from asm.commands.bench import run_bench

    sandboxes = ("bwrap", "off") if options.sandbox == "both" else (options.sandbox,)
    return run_bench(options.workers, options.issues, options.model_latency, options.json, sandboxes=sandboxes,
                     labels=options.labels, scan_repos=options.scan_repos)


# -- parsing ----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _port(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", text) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0 picks a free one)")
    return int(text)


def _label_count(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) > 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of labels from 0 to 1000")
    return int(text)


def _scan_repo_count(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text) or int(text) > 100_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of repositories from 0 to 100000")
    return int(text)


def _sample_issue_count(text: str) -> int:
    from asm.sandbox.sample_repo import SOLUTIONS

    count = _positive_int(text)
    if count > len(SOLUTIONS):
        raise argparse.ArgumentTypeError(f"the sample repository has 1 to {len(SOLUTIONS)} issues, not {count}")
    return count


def _issue_key(text: str) -> IssueRef:
    """`owner/name#N`, checked as `asm enqueue` checks its repository and number."""
    repo, sign, number = text.strip().rpartition("#")
    if not sign:
        raise BadInput(f"{text!r} is not an issue in owner/name#N form")
    return IssueRef.parse(repo, number)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 <= value < 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 to 3600)")
    return value


def _refresh_seconds(text: str) -> float:
    value = _non_negative_float(text)
    if value < 0.5:
        raise argparse.ArgumentTypeError(f"{text!r} is too often; refresh every 0.5 seconds or more")
    return value


def _worker_counts(text: str) -> list[int]:
    counts = [part.strip() for part in text.split(",")]
    if not all(re.fullmatch(r"[0-9]+", c) and int(c) >= 1 for c in counts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of worker counts like 1,2,3,5")
    return [int(c) for c in counts]


def build_parser() -> Parser:
    parser = Parser(prog="asm", description="AI Scrum Master: GitHub issues into reviewed pull requests.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    enqueue = commands.add_parser("enqueue", help="queue one issue now")
    enqueue.add_argument("issue", help="the issue number")
    enqueue.add_argument("--repo", help="owner/name (optional when ASM_REPOS has one repository)")
    enqueue.set_defaults(run=cmd_enqueue)

    commands.add_parser("scan", help="run one scan now").set_defaults(run=cmd_scan)

    status = commands.add_parser("status", help="workers, queued and running issues, spend")
    status.add_argument("--json", action="store_true", help="machine-readable")
    status.add_argument("--watch", type=_refresh_seconds, nargs="?", const=2.0, default=None,
                        metavar="SECONDS", help="refresh every SECONDS (default 2)")
    status.set_defaults(run=cmd_status)

    transcript = commands.add_parser("transcript", help="a run's conversations, every role, from Redis")
    transcript.add_argument("issue", help="owner/name#N")
    which = transcript.add_mutually_exclusive_group()
    which.add_argument("--run", dest="run_id", metavar="ID", help="the run to show (default: the latest)")
    which.add_argument("--all", action="store_true", help="every run kept, oldest first")
    transcript.add_argument("--json", action="store_true", help="machine-readable, every block whole")
    transcript.set_defaults(run=cmd_transcript)

    commands.add_parser("resume", help="take issues again after a pause").set_defaults(run=cmd_resume)

    up = commands.add_parser("up", help="one-machine fleet: Redis if needed, worker, beat, Flower")
    up.add_argument("-c", "--concurrency", type=_positive_int, default=5)
    up.add_argument("--flower-port", type=_positive_int, default=5555)
    up.add_argument("--webhook-port", type=_positive_int, default=8000,
                    help="where `asm webhook` listens, on 127.0.0.1, when ASM_WEBHOOK_SECRET is set (default 8000)")
    up.set_defaults(run=cmd_up)

    webhook = commands.add_parser("webhook", help="GitHub webhooks in: POST /webhook, into the scan's queue")
    webhook.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    webhook.add_argument("--port", type=_port, default=8000)
    webhook.set_defaults(run=cmd_webhook)

    demo = commands.add_parser("demo", help="the whole system on a sandbox GitHub and a scripted model")
    demo.add_argument("--workers", type=_positive_int, default=3)
    demo.add_argument("--issues", type=_sample_issue_count, default=5)
    demo.add_argument("--model-latency", type=_non_negative_float, default=1.0, metavar="SECONDS")
    demo.add_argument("--model-style", choices=MODEL_STYLES, default=MODEL_STYLES[0],
                      help="how the scripted model answers: sonnet-5-5 thinks in signed blocks, "
                           "like asm's default model")
    demo.set_defaults(run=cmd_demo)

    bench = commands.add_parser("bench", help="speedup and overhead through the real fleet, on the sandbox")
    bench.add_argument("--workers", type=_worker_counts, default=[1, 2, 3, 5])
    bench.add_argument("--issues", type=_sample_issue_count, default=10)
    bench.add_argument("--model-latency", type=_non_negative_float, default=1.0, metavar="SECONDS")
    bench.add_argument("--sandbox", choices=("both", "bwrap", "off"), default="both",
                       help="run each worker count with tool commands in bubblewrap, unconfined, or both (default)")
    bench.add_argument("--labels", type=_label_count, default=50, metavar="N",
                       help="labels timed from label to claim through `asm webhook` (default 50; 0 skips it)")
    bench.add_argument("--scan-repos", type=_scan_repo_count, default=1000, metavar="N",
                       help="repositories in the conditional-scan figure, 5 of them changed (default 1000; 0 skips it)")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `asm` command, as a process: asm's own log lines are left to workers."""
    # The commands say what happened themselves, in one line each.
    quiet = logging.getLogger("asm")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    return run(argv)


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status. A usage error exits (status 2) with one line."""
    options = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = options.run
    try:
        return command(options)
    except (ConfigError, BadInput) as problem:
        print(f"asm: {problem}", file=sys.stderr)
        return 2
    except (AsmError, ConnectionError) as problem:
        print(f"asm: {problem}", file=sys.stderr)
        return 1
    except redis.RedisError as problem:
        print(f"asm: Redis failed: {problem}", file=sys.stderr)
        return 1
    except requests.RequestException as problem:
        print(f"asm: cannot reach GitHub: {type(problem).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
