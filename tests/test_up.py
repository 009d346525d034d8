"""`asm up`: the one-machine fleet from one command, with its own embedded Redis, worked for real;
locked by default (Redis wants a password, Flower a login, both on 127.0.0.1 only), and beat and
Flower never see the GitHub token or the model key."""

from __future__ import annotations

import base64
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from asm.config import read_dotenv
from asm.sandbox.fleet import Sandbox, wait_for

REPO = "acme/textkit"
FLOWER_PATHS = ("/", "/tasks", "/api/workers", "/api/tasks", "/metrics")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str, login: str | None = None) -> tuple[int, str]:
    """Status and body of a GET, with basic auth when a `user:password` login is given."""
    request = urllib.request.Request(url)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(login.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def flower_up(port: int) -> bool:
    try:
        return get(f"http://127.0.0.1:{port}/healthcheck") == (200, "OK")
    except OSError:
        return False


def listening_addresses(port: int) -> set[str]:
    """Addresses a socket listens on at `port`, from the kernel's tables (IPv6 ones as `ipv6`)."""
    found = set()
    for table, family in (("/proc/net/tcp", "ipv4"), ("/proc/net/tcp6", "ipv6")):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if family == "ipv4" else "ipv6")
    return found


def raw_redis(port: int, command: bytes = b"PING") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(command + b"\r\n")
        return client.recv(200)


def children(pid: int) -> dict[str, int]:
    """The processes `asm up` started, by role: worker, beat, flower, webhook when set, and redis when embedded."""
    found = {}
    for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split():
        args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        role = next((r for r in ("worker", "beat", "flower", "webhook") if r.encode() in args), "redis")
        found[role] = int(child)
    return found


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(entry.partition("=")[::2] for entry in raw.split("\0") if entry)


@contextmanager
def asm_up(env: dict[str, str], cwd: Path, log_path: Path, port: int, *more: str) -> Iterator[subprocess.Popen[bytes]]:
    """`asm up -c 1` in its own session; Ctrl-C at the end, and every process it started must be gone."""
    with open(log_path, "ab") as log:
        up = subprocess.Popen([sys.executable, "-m", "asm", "up", "-c", "1", "--flower-port", str(port), *more],
                              env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield up
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
    assert up.returncode == 0, log_path.read_text()[-3000:]
    leftovers = subprocess.run(["pgrep", "-g", str(up.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "asm up must stop every process it started"


def test_asm_up_runs_the_fleet_locked_works_an_issue_stops_everything_and_reuses_its_credentials(
        sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.create_repo(REPO)
    [number] = sandbox.add_sample_issues(1)
    # Flower would open its API to anyone with this; asm's Flower must not.
    env = sandbox.process_env(FLOWER_UNAUTHENTICATED_API="true", ASM_SCAN_INTERVAL="1")
    env.pop("ASM_REDIS_URL")
    credentials = Path(env["ASM_WORKSPACE_DIR"]) / ".asm-up" / "credentials"
    port, base = free_port(), ""
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"

    with asm_up(env, tmp_path, first_log, port) as up:
        base = f"http://127.0.0.1:{port}"
        # beat scans, the worker works the issue: no enqueue from here
        assert wait_for(lambda: sandbox.settled(REPO, [number]), 120), first_log.read_text()[-4000:]
        assert sandbox.github.issue(REPO, number).labels == ("in-review",)
        assert wait_for(lambda: flower_up(port), 60), first_log.read_text()[-3000:]
        assert f"Flower on http://127.0.0.1:{port}" in first_log.read_text()
        assert credentials.stat().st_mode & 0o777 == 0o600
        assert credentials.parent.stat().st_mode & 0o777 == 0o700
        kept = read_dotenv(credentials)
        redis_password, login = kept["REDIS_PASSWORD"], kept["FLOWER_AUTH"]
        assert login.startswith("asm:") and len(login) > 20 and len(redis_password) >= 24

        redis_port = int(re.search(r"embedded Redis at redis://\*\*\*@127\.0\.0\.1:(\d+)/0",
                                   first_log.read_text()).group(1))
        assert raw_redis(redis_port).startswith(b"-NOAUTH")
        assert raw_redis(redis_port, b"AUTH wrong").startswith(b"-WRONGPASS")
        redis.Redis(port=redis_port, password=redis_password).set("asm:test:kept", "across runs")
        assert listening_addresses(redis_port) == {"127.0.0.1"}

        assert listening_addresses(port) == {"127.0.0.1"}
        for path in FLOWER_PATHS:
            assert get(base + path)[0] == 401, path
            assert get(base + path, "asm:wrong")[0] == 401, path
            assert get(base + path, login)[0] == 200, path
        assert "asm_workers" in get(base + "/metrics", login)[1]

        processes = children(up.pid)
        assert set(processes) == {"worker", "beat", "flower", "redis"}
        for role in ("beat", "flower", "redis"):
            environ = environ_of(processes[role])
            assert not environ.get("GITHUB_TOKEN") and not environ.get("ANTHROPIC_API_KEY"), role
            raw = Path(f"/proc/{processes[role]}/environ").read_bytes()
            assert sandbox.github_token.encode() not in raw and sandbox.api_key.encode() not in raw, role
        assert not environ_of(processes["beat"]).get("ASM_FLOWER_AUTH")
        assert environ_of(processes["flower"])["ASM_FLOWER_AUTH"] == login
        assert "FLOWER_UNAUTHENTICATED_API" not in environ_of(processes["flower"])
        assert environ_of(processes["worker"])["GITHUB_TOKEN"] == sandbox.github_token
        for pid in processes.values():
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert redis_password.encode() not in command_line and login.encode() not in command_line

    first = first_log.read_text()
    assert first.count(login) == 1, "the generated login is shown once, when it is made"
    assert redis_password not in first

    with asm_up(env, tmp_path, second_log, port):
        assert wait_for(lambda: flower_up(port), 60), second_log.read_text()[-3000:]
        assert read_dotenv(credentials) == kept
        assert credentials.stat().st_mode & 0o777 == 0o600
        assert get(base + "/api/workers")[0] == 401
        assert get(base + "/api/workers", login)[0] == 200
        second = second_log.read_text()
        redis_port = int(re.search(r"embedded Redis at redis://\*\*\*@127\.0\.0\.1:(\d+)/0", second).group(1))
        assert redis.Redis(port=redis_port, password=redis_password).get("asm:test:kept") == b"across runs"

    second = second_log.read_text()
    assert str(credentials) in second
    assert login.partition(":")[2] not in second and redis_password not in second


def test_asm_up_uses_a_given_redis_and_flower_login_as_they_are(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.create_repo(REPO)
    given = "ops:given-Login-1234"
    env = sandbox.process_env(ASM_FLOWER_AUTH=given)  # ASM_REDIS_URL: the session's Redis
    port, log_path = free_port(), tmp_path / "up.log"
    with asm_up(env, tmp_path, log_path, port) as up:
        assert wait_for(lambda: flower_up(port), 60), log_path.read_text()[-3000:]
        assert "redis" not in children(up.pid)
        assert get(f"http://127.0.0.1:{port}/api/workers")[0] == 401
        assert get(f"http://127.0.0.1:{port}/api/workers", given)[0] == 200
    output = log_path.read_text()
    assert "embedded Redis" not in output and "given-Login-1234" not in output
    assert not (Path(env["ASM_WORKSPACE_DIR"]) / ".asm-up" / "credentials").exists()  # nothing to generate


def test_asm_up_starts_the_webhook_server_when_its_secret_is_set_and_gives_the_secret_to_it_alone(
        sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.create_repo(REPO)
    secret = "whsec-up-Test-5678"
    env = sandbox.process_env(ASM_FLOWER_AUTH="ops:given-Login-1234", ASM_WEBHOOK_SECRET=secret)
    port, hook_port, log_path = free_port(), free_port(), tmp_path / "up.log"

    def healthy() -> bool:
        try:
            return get(f"http://127.0.0.1:{hook_port}/healthz") == (200, "ok\n")
        except OSError:
            return False

    with asm_up(env, tmp_path, log_path, port, "--webhook-port", str(hook_port)) as up:
        assert wait_for(healthy, 60), log_path.read_text()[-3000:]
        processes = children(up.pid)
        assert set(processes) == {"worker", "beat", "flower", "webhook"}
        assert listening_addresses(hook_port) == {"127.0.0.1"}
        for role, pid in processes.items():
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            assert (secret.encode() in raw) == (role == "webhook"), role
            assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        hook_environ = environ_of(processes["webhook"])
        assert not hook_environ.get("GITHUB_TOKEN") and not hook_environ.get("ANTHROPIC_API_KEY")
    output = log_path.read_text()
    assert f"webhooks on http://127.0.0.1:{hook_port}/webhook" in output and secret not in output


def run_up(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asm", "up", "-c", "1", "--flower-port", str(free_port())],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_bad_input_to_asm_up_gets_one_line_and_starts_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.create_repo(REPO)
    env = sandbox.process_env()
    env.pop("ASM_REDIS_URL")
    credentials = Path(env["ASM_WORKSPACE_DIR"]) / ".asm-up" / "credentials"

    refused = run_up({**env, "ASM_FLOWER_AUTH": "no-colon-here"}, tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.splitlines() == ["asm: ASM_FLOWER_AUTH=(not shown): must be user:password"]
    assert not credentials.exists()

    credentials.parent.mkdir(parents=True)
    credentials.write_text("REDIS_PASSWORD=abc\nFLOWER_AUTH=asm:abc\n")
    credentials.chmod(0o644)
    refused = run_up(env, tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"asm: {credentials}: others may read it (mode 644)") and "abc" not in line

    credentials.chmod(0o600)
    credentials.write_text("REDIS_PASSWORD=not a password\n")
    refused = run_up(env, tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [f"asm: {credentials}: not as `asm up` wrote it; "
                                           "delete it for new credentials"]
