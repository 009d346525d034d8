"""The repository's `.asm/setup.sh`, run for real through the jail: the default branch's copy, with network for
itself alone, no secret, a timeout, and a failure's tail in a code block the output cannot close."""

from __future__ import annotations

import os
import re
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from git_origin import Origin

from asm.guard.jail import Jail, tool_environment
from asm.guard.redaction import Secrets
from asm.keys import IssueRef
from asm.run.repo_setup import (
    MAX_SCRIPT_BYTES,
    SETUP_PATH,
    TAIL_CHARACTERS,
    TAIL_LINES,
    SetupResult,
    failure_details,
    run_setup,
)
from asm.workspace import Checkout, Workspaces

TOKEN = "ghp_SECRET123setupscript"
ISSUE = IssueRef("acme/shop", 4)
AS_ROOT = os.geteuid() == 0
TUN_FOR_ALL = os.path.exists("/dev/net/tun") and os.stat("/dev/net/tun").st_mode & 0o006 == 0o006
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
needs_network = pytest.mark.skipif(not AS_ROOT and not TUN_FOR_ALL, reason="/dev/net/tun is mode 0600 on this "
                                   "machine: slirp4netns needs it, so the network works only for a root worker here")


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    origin = Origin(tmp_path)
    origin.commit({"README.md": "# shop\n"})
    return origin


@pytest.fixture(params=["bwrap", "off"])
def jail(request: pytest.FixtureRequest) -> Jail:
    return Jail(mode=request.param)


def set_up(tmp_path: Path, jail: Jail, origin: Origin, script: str | bytes | None, base: str = "main",
           timeout: float = 60, redact: Secrets | None = None) -> tuple[SetupResult, Checkout]:
    """`script` committed as main's .asm/setup.sh, a workspace on `base`, and the setup run in it."""
    if script is not None:
        origin.commit({SETUP_PATH: script})
    workspaces = Workspaces(tmp_path / "work", TOKEN, jail, Secrets([TOKEN]), remote_backoff_seconds=0)
    checkout = workspaces.create("worker-1", ISSUE, origin.url, base)
    result = run_setup(workspaces, checkout, "main", redact.redact if redact else lambda text: text,
                       timeout=timeout)
    return result, checkout


def agent(jail: Jail, checkout: Checkout, command: str) -> str:
    """A tool command of the agents afterwards (the jail's own network: off)."""
    with tempfile.TemporaryFile() as output:
        jail.run(command, checkout.tree, checkout.scratch, tool_environment(), output, timeout=60)
        output.seek(0)
        return output.read().decode(errors="replace")


# -- what runs, and what it leaves ---------------------------------------------------------------------------


def test_no_setup_script_is_nothing_to_run(tmp_path: Path, origin: Origin) -> None:
    result, checkout = set_up(tmp_path, Jail(), origin, None)

    assert result == SetupResult(ran=False) and result.ok and result.reason == ""
    assert not (checkout.path / "setup.log").exists()


def test_a_script_that_succeeds_leaves_what_it_made_for_the_agents(tmp_path: Path, origin: Origin,
                                                                   jail: Jail) -> None:
    # Unconfined, HOME is the host's /tmp/home, as for every tool command: only the sandbox gives the issue its own.
    home = "$HOME" if jail.confined else str(tmp_path)
    result, checkout = set_up(tmp_path, jail, origin, "set -e\nmkdir -p .venv\necho ready > .venv/state\n"
                                                      f"echo cached > {home}/cache\necho done\n")

    assert result.ran and result.ok and result.exit_code == 0, result
    assert result.tail == "done" and result.seconds >= 0
    assert agent(jail, checkout, f"cat .venv/state {home}/cache") == "ready\ncached\n"
    assert [path.name for path in checkout.scratch.iterdir()] == ["home"]  # the script itself is gone


def test_a_failing_script_reports_the_tail_of_its_output(tmp_path: Path, origin: Origin, jail: Jail) -> None:
    result, _ = set_up(tmp_path, jail, origin, "for i in $(seq 1 100); do echo line $i; done\n"
                                               "printf '\\033[31mcoloured\\033[0m\\n'; echo oops >&2; exit 3\n")

    assert result.ran and not result.ok and result.exit_code == 3 and result.reason == "exit code 3"
    lines = result.tail.splitlines()
    assert len(lines) == TAIL_LINES and lines[-2:] == ["coloured", "oops"] and lines[0] == "line 43"
    details = failure_details(result)
    assert "`.asm/setup.sh` (the default branch's) failed: exit code 3" in details
    assert "```text\nline 43\n" in details and details.endswith("oops\n```")


def test_a_script_past_its_timeout_is_stopped(tmp_path: Path, origin: Origin, jail: Jail) -> None:
    result, _ = set_up(tmp_path, jail, origin, "echo starting\nsleep 30\n", timeout=1)

    assert not result.ok and result.stopped.startswith("timed out after 1s")
    assert result.reason == result.stopped and result.tail == "starting" and result.seconds < 20


def test_a_script_too_big_is_not_run(tmp_path: Path, origin: Origin) -> None:
    result, checkout = set_up(tmp_path, Jail(), origin, "touch ran\n" + "#" * MAX_SCRIPT_BYTES)

    assert result.ran and not result.ok and "not run" in result.reason
    assert not (checkout.tree / "ran").exists()


def test_the_tail_is_bounded_and_redacted(tmp_path: Path, origin: Origin) -> None:
    result, _ = set_up(tmp_path, Jail(), origin, f"yes {'x' * 500} | head -n 50\necho 'token: {TOKEN}'\nexit 1\n",
                       redact=Secrets([TOKEN]))

    assert len(result.tail) == TAIL_CHARACTERS
    assert result.tail.endswith("token: [redacted]") and TOKEN not in result.tail


def test_the_failure_details_fence_cannot_be_closed_by_the_output(tmp_path: Path, origin: Origin) -> None:
    result, _ = set_up(tmp_path, Jail(), origin, "echo '``````'; echo '```'; echo '@someone'; exit 1\n")

    details = failure_details(result)
    fence = "`" * 7
    assert details.endswith(f"\n{fence}") and f"\n{fence}text\n``````\n```\n@someone\n{fence}" in details


# -- which script: the default branch's, never the tree's or a pull request's ---------------------------------


def test_a_pull_requests_own_setup_script_is_not_the_one_run(tmp_path: Path, origin: Origin) -> None:
    origin.commit({SETUP_PATH: "touch from-main\n"})
    origin.commit({SETUP_PATH: "touch from-the-pull-request\n"}, branch="ai-feature/issue-4")

    # A follow-up run: the tree is the pull request's head, whose setup.sh the agents wrote.
    result, checkout = set_up(tmp_path, Jail(), origin, None, base="ai-feature/issue-4")

    assert result.ok and result.ran
    assert (checkout.tree / "from-main").exists() and not (checkout.tree / "from-the-pull-request").exists()
    assert (checkout.tree / SETUP_PATH).read_text() == "touch from-the-pull-request\n"  # the tree's is theirs


# -- no secret, and network for the setup alone --------------------------------------------------------------


def test_no_secret_of_the_worker_reaches_the_script(tmp_path: Path, origin: Origin, jail: Jail,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-NOT-FOR-SETUP")

    result, checkout = set_up(tmp_path, jail, origin, "env; tr '\\0' '\\n' < /proc/self/environ\n")

    said = (checkout.path / "setup.log").read_text()  # the whole output, not redacted
    assert result.ok and "PATH=" in said
    assert TOKEN not in said and "sk-ant-NOT-FOR-SETUP" not in said and "GITHUB_TOKEN" not in said


ROUTES = "grep -c tap0 /proc/net/dev; awk '$2 == \"00000000\" {print \"default route\"}' /proc/net/route\n"


@needs_network
def test_the_setup_has_a_network_and_the_agents_commands_do_not(tmp_path: Path, origin: Origin) -> None:
    jail = Jail()  # ASM_TOOL_NETWORK off

    result, checkout = set_up(tmp_path, jail, origin, ROUTES)

    assert result.ok and result.tail == "1\ndefault route", result
    assert agent(jail, checkout, ROUTES) == "0\n"  # only its own loopback, no route


class Greeter:
    """A TCP server on the host's address off loopback that answers each connection with a word."""

    def __init__(self, address: str) -> None:
        word = b"hello-from-outside\n"

        class Greet(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(word)

        self.server = socketserver.ThreadingTCPServer((address, 0), Greet)
        self.server.daemon_threads = True
        self.address, self.port = address, self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def outside() -> Iterator[Greeter]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # routing only: UDP connect sends nothing
        except OSError:
            pytest.skip("this machine has no address off loopback")
        address = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no address off loopback")
    greeter = Greeter(address)
    yield greeter
    greeter.close()


CONNECT = """python3 -c "
import socket
try:
    print(socket.create_connection(('{address}', {port}), timeout=5).recv(100).decode().strip())
except OSError as problem:
    print('unreachable', problem)
"
"""


@needs_network
def test_the_setup_reaches_out_while_a_tool_command_cannot(tmp_path: Path, origin: Origin,
                                                           outside: Greeter) -> None:
    jail = Jail()
    connect = CONNECT.format(address=outside.address, port=outside.port)

    result, checkout = set_up(tmp_path, jail, origin, connect)

    assert result.ok and result.tail == "hello-from-outside", result
    assert agent(jail, checkout, connect).startswith("unreachable")


def test_without_slirp4netns_the_setup_fails_saying_so(tmp_path: Path, origin: Origin,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    origin.commit({SETUP_PATH: "touch ran\n"})
    workspaces = Workspaces(tmp_path / "work", TOKEN, Jail(), Secrets([TOKEN]), remote_backoff_seconds=0)
    checkout = workspaces.create("worker-1", ISSUE, origin.url, "main")
    bin_dir = tmp_path / "bin"  # a PATH with bwrap and git but no slirp4netns
    bin_dir.mkdir()
    for tool in ("bwrap", "git"):
        os.symlink(shutil.which(tool) or tool, bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))

    result = run_setup(workspaces, checkout, "main")

    assert not result.ok and re.search(r"needs slirp4netns", result.reason)
    assert not (checkout.tree / "ran").exists()
