"""Attacks on the sandbox tool commands run in: each a real command that must fail, beside an honest one that works.

The agent's command is the attacker: it tries to outlive its call, see or signal the worker, read
asm's files or the worker's secrets, write outside its tree, reach the host's services, exhaust the
machine or gain privileges. Everything here is real: bwrap, setpriv, slirp4netns, processes found
on the host through /proc afterwards. Run as root (the usual worker), the same attacks are also
driven from an unprivileged worker through tests/jail_driver.py.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from processes import running

from asm.agents.tools import BashTool, WorkingTree
from asm.errors import SandboxUnavailable
from asm.guard.jail import SHOWN_ROOT, Jail, Limits, prepare, tool_environment
from asm.sandbox.redis_server import RedisServer

AS_ROOT = os.geteuid() == 0
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
needs_root = pytest.mark.skipif(not AS_ROOT, reason="only a root worker runs commands as another user")
# Small, so an attack on them ends fast; the timeout stays long, so a limit, not the timeout, is what ends it.
TIGHT = Limits(processes=32, memory_bytes=256 << 20, file_bytes=1 << 20, cpu_seconds=1)
TUN_FOR_ALL = os.path.exists("/dev/net/tun") and os.stat("/dev/net/tun").st_mode & 0o006 == 0o006


# -- the host around one sandbox -------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    """A worker's machine around one issue: its folder, its workspaces, other trees, each holding `secret`."""

    worker: Path  # the worker's folder, with its .env
    workspaces: Path  # ASM_WORKSPACE_DIR
    tree: Path
    scratch: Path
    other_tree: Path  # another issue's, beside this one
    mirror: Path
    secret: str

    def secret_files(self) -> list[Path]:
        return [self.worker / ".env", self.worker / "secret.txt", self.other_tree / "secret.txt",
                self.mirror / "config"]


@dataclass(frozen=True)
class Said:
    """What a sandboxed command printed, and how it ended."""

    output: str
    exit_code: int
    stopped: str


class Box:
    """One issue's sandbox: commands through the real Jail.run, on the host's real tree and scratch."""

    def __init__(self, jail: Jail, host: Host) -> None:
        self.jail = jail
        self.host = host
        prepare(host.tree, host.scratch, jail.owner)

    def run(self, command: str, timeout: float = 60.0, limits: Limits | None = None) -> Said:
        with tempfile.TemporaryFile() as output:
            done = self.jail.run(command, self.host.tree, self.host.scratch, tool_environment(), output,
                                 timeout=timeout, limits=limits)
            output.seek(0)
            return Said(output.read().decode(errors="replace"), done.exit_code, done.stopped)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    secret = f"asm-secret-{secrets.token_hex(8)}"
    worker = tmp_path / "worker"
    worker.mkdir()
    (worker / ".env").write_text(f"GITHUB_TOKEN={secret}\n")
    (worker / "secret.txt").write_text(secret)
    workspaces = tmp_path / "parallel_workspace"
    issue = workspaces / "worker-0" / "owner+repo#1"
    other_tree = workspaces / "worker-1" / "owner+repo#2" / "tree"
    mirror = workspaces / ".mirrors" / "owner+repo.git"
    for directory in (issue / "tree", other_tree, mirror):
        directory.mkdir(parents=True)
    (other_tree / "secret.txt").write_text(secret)
    (mirror / "config").write_text(f"[remote]\n\turl = https://x-access-token:{secret}@github.com/owner/repo\n")
    (issue / "tree" / "README.md").write_text("# repo\n")
    return Host(worker, workspaces, issue / "tree", issue / "tmp", other_tree, mirror, secret)


def production_jail(host: Host, network: bool = False) -> Jail:
    """A jail hiding what asm.deps hides: the workspaces, the worker's folder and HOME, its .env."""
    hidden = (host.workspaces, host.worker, Path.cwd(), Path.home(), host.worker / ".env")
    return Jail(network=network, hidden=hidden)


@pytest.fixture
def box(host: Host) -> Box:
    return Box(production_jail(host), host)


@pytest.fixture
def token() -> Iterator[str]:
    """A number no other process has as an argument: `sleep <token>` can be looked for on the host."""
    mark = f"9{secrets.randbelow(10**7):07d}.5"
    yield mark
    kill_all(mark)  # only when the sandbox failed: leave nothing behind


def kill_all(mark: str) -> None:
    """Stop every process holding `mark` anywhere in its arguments until no new one appears, then kill them all.

    Stopped first, so an escaped fork bomb cannot breed faster than it is killed.
    """
    held: set[int] = set()
    while fresh := set(running(mark, anywhere=True)) - held:
        for pid in fresh:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        held |= fresh
    for pid in held:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def gone(mark: str, within: float = 10.0, anywhere: bool = False) -> bool:
    """Whether every process holding `mark` has ended, waiting at most `within` seconds for a kill to land."""
    deadline = time.monotonic() + within
    while running(mark, anywhere):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_for(mark: str) -> str:
    """Shell lines that hold the command until a process `sleep <mark>` runs in the sandbox, then say so."""
    return f"until pgrep -f -x 'sleep {mark}' > /dev/null; do sleep 0.02; done\necho started\n"


# -- processes: nothing outlives the call, nothing of the host is seen or touched ----------------------


DETACHED = {
    "setsid env -i": "setsid env -i sleep {mark} > /dev/null 2>&1 &",
    "nohup": "nohup sleep {mark} > /dev/null 2>&1 &",
    "double fork": "( ( sleep {mark} > /dev/null 2>&1 & ) & )",
    "disown": "sleep {mark} > /dev/null 2>&1 & disown",
    "setsid --fork": "setsid --fork sleep {mark} > /dev/null 2>&1",
    "daemon": ("python3 -c \"import os; os.fork() and os._exit(0); os.setsid(); os.fork() and os._exit(0); "
               "os.execvp('sleep', ['sleep', '{mark}'])\" > /dev/null 2>&1"),
}


@pytest.mark.parametrize("escape", DETACHED.values(), ids=DETACHED.keys())
def test_a_detached_process_does_not_survive_the_call(box: Box, token: str, escape: str) -> None:
    said = box.run(escape.format(mark=token) + "\n" + wait_for(token))

    assert said == Said("started\n", 0, "")  # it ran, detached, and the call still returned at once
    assert running(token) == []  # gone when the call returns: the namespace died with its init


def test_a_detached_process_does_not_survive_the_timeout_either(box: Box, token: str) -> None:
    said = box.run(f"setsid env -i sleep {token} & nohup sleep {token} > /dev/null 2>&1 &\n"
                   + wait_for(token) + f"sleep {token}", timeout=1)

    assert said.stopped == "timed out after 1s and was killed"
    assert "started" in said.output
    assert gone(token)
    assert box.run("echo next") == Said("next\n", 0, "")


WORKER = """
import sys, tempfile
from pathlib import Path
from asm.guard.jail import Jail, prepare, tool_environment
tree, scratch, mark, network = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3][5:], sys.argv[4] == "on"
with tempfile.TemporaryFile() as output:
    Jail(network=network).run(f"sleep {mark} & sleep {mark}", tree, scratch, tool_environment(), output)
"""


def children_of(parent: int, name: str) -> list[int]:
    """The processes called `name` whose parent is `parent`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            command, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if command == name and int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def ended(pid: int, within: float = 10.0) -> bool:
    """Whether `pid` has exited (a zombie has), waiting at most `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("network", ["off", pytest.param("on", marks=pytest.mark.skipif(
    not AS_ROOT and not TUN_FOR_ALL, reason="/dev/net/tun is mode 0600 on this machine: the network mode "
    "works only for a root worker here"))])
def test_a_worker_killed_mid_command_takes_its_sandbox_with_it(host: Host, token: str, network: str) -> None:
    prepare(host.tree, host.scratch, production_jail(host).owner)
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(host.tree), str(host.scratch), f"mark={token}",
                               network],
                              cwd=Path(__file__).parents[1])
    try:
        deadline = time.monotonic() + 30
        while len(running(token)) < 2 and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(running(token)) == 2, "the command never started"
        helpers = children_of(worker.pid, "slirp4netns")
        assert len(helpers) == (1 if network == "on" else 0)
    finally:
        worker.kill()  # as Celery's hard time limit does
        worker.wait()

    assert gone(token)  # the sandbox died with its parent
    assert all(ended(helper) for helper in helpers)  # and so did its network


def test_the_hosts_processes_are_invisible(box: Box) -> None:
    said = box.run(f"ps -e -o comm=; echo pids=$(ls /proc | grep -c '^[0-9]*$'); "
                   f"test -e /proc/{os.getpid()} && echo SEEN-WORKER; true")

    names = said.output.split()
    assert "ps" in names and "bash" in names  # ps works, and sees the sandbox's own processes
    assert not {"python", "python3", "pytest", "systemd", "init", "sshd"} & set(names)
    assert "SEEN-WORKER" not in said.output
    assert int(said.output.split("pids=")[1].split()[0]) < 10


def test_the_environment_of_the_hosts_processes_is_unreachable(box: Box, host: Host, token: str) -> None:
    # A process of the tool user's own, holding a secret the way a worker holds its token.
    neighbour = subprocess.Popen(["sleep", token], env={"GITHUB_TOKEN": host.secret}, **as_tool_user(box.jail))
    try:
        said = box.run(f"cat /proc/{neighbour.pid}/environ /proc/{os.getpid()}/environ; "
                       "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; done 2>/dev/null; "
                       "echo; tr '\\0' '\\n' < /proc/self/environ")
    finally:
        neighbour.kill()
        neighbour.wait()

    assert host.secret not in said.output
    assert "No such file" in said.output
    assert "HOME=/tmp/home" in said.output  # its own environment is there to read


def as_tool_user(jail: Jail) -> dict[str, object]:
    """subprocess options that start a host process as the user sandboxed commands run as."""
    return {"user": jail.owner[0], "group": jail.owner[1], "extra_groups": []} if jail.owner else {}


def test_a_command_cannot_signal_the_worker_or_the_tool_users_other_processes(box: Box, token: str) -> None:
    neighbour = subprocess.Popen(["sleep", token], **as_tool_user(box.jail))
    try:
        said = box.run(f"kill -9 {os.getpid()}; echo worker=$?; kill -9 {neighbour.pid}; echo neighbour=$?\n"
                       "sleep 1000 & own=$!; kill -9 $own; wait $own; echo own=$?\n"
                       "kill -9 -1")  # everything this user may signal, itself included

        assert "worker=1" in said.output and "neighbour=1" in said.output
        assert "own=137" in said.output  # its own processes it may kill
        assert neighbour.poll() is None  # same user, other PID namespace: untouched
    finally:
        neighbour.kill()
        neighbour.wait()


def test_no_descriptor_of_the_worker_reaches_the_command(box: Box, host: Host) -> None:
    with open(host.worker / ".env") as held:
        os.set_inheritable(held.fileno(), True)  # even one the worker would hand down
        said = box.run(f"echo $(ls /proc/self/fd); cat /proc/self/fd/{held.fileno()} <&{held.fileno()}; "
                       "cat /dev/stdin; readlink /proc/self/fd/1")

    assert host.secret not in said.output
    assert said.output.startswith("0 1 2 3\n")  # stdin, the output twice, and ls's own directory: nothing else
    assert said.output.rstrip().endswith("(deleted)")  # the output is a file of asm's, already unlinked


# -- files: the system read-only, the tree and the scratch writable, nothing of asm's there -------------


def test_the_tree_and_the_scratch_are_writable_and_land_on_the_host(box: Box, host: Host) -> None:
    said = box.run("echo tree > /workspace/a.txt && echo scratch > /tmp/b.txt && echo home > $HOME/c.txt && pwd")

    assert said == Said(SHOWN_ROOT + "\n", 0, "")
    assert (host.tree / "a.txt").read_text() == "tree\n"
    assert (host.scratch / "b.txt").read_text() == "scratch\n"
    assert (host.scratch / "home" / "c.txt").read_text() == "home\n"


def test_the_system_is_read_only(box: Box, token: str) -> None:
    targets = [f"{top}/asm-escape-{token}" for top in ("/usr", "/usr/local/bin", "/usr/lib", "/etc", "/etc/cron.d",
                                                       "/opt", "/bin", "/lib")]
    said = box.run(try_to_write(targets) + "echo x >> /etc/hosts && echo WROTE /etc/hosts\n"
                   "echo x >> /etc/passwd && echo WROTE /etc/passwd\nhead -c 5 /etc/passwd")

    assert "WROTE" not in said.output and "MADE" not in said.output
    assert "Read-only file system" in said.output or "Permission denied" in said.output
    assert not [target for target in targets if os.path.lexists(target) or os.path.lexists(target + ".d")]
    assert said.output.endswith("root:")  # the system is there to read


def try_to_write(targets: list[str]) -> str:
    """Shell lines that try to write a file and make a directory at each target, saying which worked."""
    quoted = " ".join(f"'{target}'" for target in targets)
    return (f"for p in {quoted}; do\n"
            "  (echo x > \"$p\") 2>&1 && echo \"WROTE $p\"\n"
            "  mkdir \"$p.d\" 2>/dev/null && echo \"MADE $p.d\"\n"
            "done\n")


def test_writing_outside_the_tree_and_the_scratch_leaves_nothing_on_the_host(box: Box, host: Host,
                                                                             token: str) -> None:
    name = f"asm-escape-{token}"
    tops = ["", "/root", "/home", "/var/tmp", "/srv", "/run", "/mnt", "/dev", "/dev/pts", sys.prefix,
            str(host.worker), str(host.workspaces), str(host.other_tree), str(host.tree.parent), str(Path.home())]
    targets = [f"{top}/{name}" for top in tops]

    said = box.run(try_to_write(targets) + f"echo honest > /workspace/{name}")

    assert "WROTE" not in said.output and "MADE" not in said.output
    assert not [target for target in targets if os.path.lexists(target) or os.path.lexists(target + ".d")]
    assert (host.tree / name).read_text() == "honest\n"


def test_asms_files_and_the_workers_home_are_absent(box: Box, host: Host) -> None:
    home = [entry for entry in Path.home().iterdir() if not holds_python(entry)]
    paths = [*host.secret_files(), host.workspaces, host.worker, host.other_tree, host.tree, Path.cwd(), *home]

    said = box.run("".join(f"test -e '{path}' && echo 'SEEN {path}'; cat '{path}' 2>/dev/null\n" for path in paths)
                   + f"ls -A /workspace/..; cat README.md; test -x '{sys.executable}' && echo python-here")

    assert host.secret not in said.output
    assert "SEEN" not in said.output
    assert "# repo" in said.output and "python-here" in said.output  # its tree, and the worker's Python
    assert "parallel_workspace" not in said.output and "owner+repo#2" not in said.output


def holds_python(path: Path) -> bool:
    """Whether the worker's Python lives at or under `path` (the sandbox shows it, read-only)."""
    prefixes = {Path(os.path.realpath(p)) for p in (sys.prefix, sys.base_prefix)}
    prefixes.add(Path(os.path.realpath(sys.executable)).parent.parent)
    return any(prefix == path or path in prefix.parents for prefix in prefixes)


@pytest.fixture
def under_opt() -> Iterator[Path]:
    """A folder of asm's under a system directory the sandbox shows (/opt), readable by anyone on the host."""
    try:
        place = Path(tempfile.mkdtemp(prefix="asm-hidden-", dir="/opt"))
    except OSError:
        pytest.skip("needs a writable /opt: a hidden path under a system directory")
    place.chmod(0o755)
    yield place
    shutil.rmtree(place)


def test_hidden_paths_under_a_system_directory_are_empty(host: Host, under_opt: Path) -> None:
    worker, workspaces, lone = under_opt / "worker", under_opt / "parallel_workspace", under_opt / "asm.env"
    (workspaces / "w1" / "tree").mkdir(parents=True)
    worker.mkdir()
    for secret_file in (worker / ".env", worker / "secret.txt", workspaces / "w1" / "tree" / "secret.txt", lone):
        secret_file.write_text(host.secret)
    (under_opt / "public.txt").write_text("public\n")
    for path in (worker, workspaces, workspaces / "w1", workspaces / "w1" / "tree"):
        path.chmod(0o755)
    box = Box(Jail(hidden=(worker, workspaces, lone)), host)

    said = box.run(f"for d in '{worker}' '{workspaces}'; do test -d $d && echo holds $(ls -A $d | wc -l); done; "
                   f"cat '{worker}/.env' '{lone}' '{workspaces}/w1/tree/secret.txt'; "
                   f"echo x > '{worker}/planted' && echo WROTE; cat '{under_opt}/public.txt'")

    assert host.secret not in said.output
    assert "WROTE" not in said.output and not (worker / "planted").exists()
    assert said.output.startswith("holds 0\nholds 0\n")  # there, and empty
    assert "public" in said.output  # the rest of the system directory is still there


def test_links_planted_in_the_tree_lead_nowhere(box: Box, host: Host) -> None:
    links = {"leak-env": host.worker / ".env", "leak-dir": host.worker, "leak-other": host.other_tree / "secret.txt",
             "leak-environ": Path(f"/proc/{os.getpid()}/environ"), "leak-mirror": host.mirror / "config"}
    for name, target in links.items():
        (host.tree / name).symlink_to(target)  # as if committed in the repository
    box = Box(box.jail, host)  # the tree handed to the tool user again

    said = box.run("for l in leak-*; do cat $l; ls $l/; done 2>&1; ln -s README.md readme && cat readme")

    assert host.secret not in said.output
    assert said.output.count("No such file or directory") >= 2 * len(links)
    assert said.output.endswith("# repo\n")  # a link inside the tree works


def test_a_hard_link_to_a_host_file_cannot_be_made(box: Box, host: Host) -> None:
    said = box.run("ln /etc/passwd passwd-link; ln /usr/bin/su su-link; ln /tmp/home home-link; "
                   "ln README.md README.hard && echo linked")

    assert "Invalid cross-device link" in said.output
    assert not any((host.tree / name).exists() for name in ("passwd-link", "su-link", "home-link"))
    assert "linked" in said.output and (host.tree / "README.hard").stat().st_nlink == 2


# -- the network: none by default; outbound only, never the host's loopback, when on ------------------


class Greeter:
    """A TCP server on the host that answers each connection with a word of its own, then hangs up."""

    def __init__(self, address: str) -> None:
        self.word = f"hello-{secrets.token_hex(4)}"
        word = self.word.encode() + b"\n"

        class Greet(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(word)

        self.server = socketserver.ThreadingTCPServer((address, 0), Greet)
        self.server.daemon_threads = True
        self.target = f"{address}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def host_address() -> str | None:
    """The host's address on its default route (not loopback), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # routing only: UDP connect sends nothing
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@pytest.fixture
def loopback_greeter() -> Iterator[Greeter]:
    greeter = Greeter("127.0.0.1")
    yield greeter
    greeter.close()


@pytest.fixture
def outside_greeter() -> Iterator[Greeter]:
    address = host_address()
    if address is None:
        pytest.skip("this machine has no address off loopback")
    greeter = Greeter(address)
    yield greeter
    greeter.close()


PROBE = """python3 - {targets} <<'PROBE'
import errno, socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as connection:
            print(target, "OK", connection.recv(100).decode(errors="replace").strip())
    except OSError as problem:
        print(target, "FAIL", errno.errorcode.get(problem.errno or 0, str(problem)))
PROBE
"""


def reached(output: str) -> dict[str, str]:
    """target -> "OK <greeting>" or "FAIL <errno>", from PROBE's output."""
    lines = [line.split(" ", 1) for line in output.splitlines() if " OK" in line or " FAIL" in line]
    return {target: result for target, result in lines}


def greets(greeter: Greeter) -> bool:
    """Whether the host itself reaches the greeter: so a refusal in the sandbox is the sandbox's doing."""
    host, port = greeter.target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        return connection.recv(100).decode().strip() == greeter.word


def test_with_the_network_off_there_is_no_route_and_no_host_service(box: Box, loopback_greeter: Greeter,
                                                                   redis_server: RedisServer) -> None:
    outside = host_address()
    targets = [loopback_greeter.target, f"127.0.0.1:{redis_server.port}"]
    if outside:
        targets += [f"{outside}:{loopback_greeter.target.rsplit(':', 1)[1]}", f"{outside}:22"]
    own = "python3 -c \"import socket; s = socket.create_server(('127.0.0.1', 0)); " \
          "c = socket.create_connection(s.getsockname()); print('its-own-loopback-works')\""

    said = box.run(f"cat /proc/net/route | wc -l; grep -c : /proc/net/dev; redis-cli -p {redis_server.port} ping; "
                   + own + "\n" + PROBE.format(targets=" ".join(targets)))

    results = reached(said.output)
    assert set(results) == set(targets)
    assert all(result.startswith("FAIL") for result in results.values()), results
    assert results[loopback_greeter.target] == "FAIL ECONNREFUSED"  # its own, empty loopback
    assert "PONG" not in said.output
    assert said.output.split()[:2] == ["1", "1"]  # a header and no route; one interface, lo
    assert "its-own-loopback-works" in said.output
    assert greets(loopback_greeter) and redis.Redis.from_url(redis_server.url).ping()


@pytest.mark.skipif(not AS_ROOT and not TUN_FOR_ALL, reason="/dev/net/tun is mode 0600 on this machine: "
                    "slirp4netns needs it, so the network mode works only for a root worker here")
def test_with_the_network_on_the_outside_is_reached_but_never_the_hosts_loopback(
        host: Host, loopback_greeter: Greeter, outside_greeter: Greeter, redis_server: RedisServer) -> None:
    box = Box(production_jail(host, network=True), host)
    outside = outside_greeter.target.rsplit(":", 1)[0]
    loopback_port = loopback_greeter.target.rsplit(":", 1)[1]
    refused = [loopback_greeter.target, f"10.0.2.2:{loopback_port}", f"10.0.2.2:{redis_server.port}",
               f"{outside}:{loopback_port}", f"127.0.0.1:{redis_server.port}"]

    said = box.run("cat /etc/resolv.conf\n" + PROBE.format(targets=" ".join([outside_greeter.target, *refused])))

    results = reached(said.output)
    assert results.get(outside_greeter.target) == f"OK {outside_greeter.word}", said  # outbound works
    assert all(results[target].startswith("FAIL") for target in refused), said
    assert said.output.startswith("nameserver 10.0.2.3\n")  # slirp4netns's resolver, not the host's
    assert greets(loopback_greeter) and redis.Redis.from_url(redis_server.url).ping()


@pytest.mark.skipif(not AS_ROOT and not TUN_FOR_ALL, reason="/dev/net/tun is mode 0600 on this machine: "
                    "the network mode works only for a root worker here")
def test_a_sandbox_that_cannot_start_is_an_exit_code_and_leaves_no_network_helper(host: Host) -> None:
    box = Box(production_jail(host, network=True), host)
    shutil.rmtree(host.tree)  # gone between two commands: bwrap fails once it has started

    said = box.run("echo never")

    assert said.exit_code != 0 and "never" not in said.output and said.output.startswith("bwrap:")
    assert children_of(os.getpid(), "slirp4netns") == []


# -- limits: the machine is shared -------------------------------------------------------------------


@pytest.mark.parametrize("bomb", [":(){ :|:& };:; sleep 60 # MARK",
                                  "python3 -c \"import os  # MARK\nwhile True:\n    try: os.fork()\n"
                                  "    except OSError: pass\""],
                         ids=["bash", "python"])
def test_a_fork_bomb_is_stopped_and_the_next_command_runs(box: Box, bomb: str, token: str) -> None:
    said = box.run(bomb.replace("MARK", token), timeout=120, limits=TIGHT)

    assert said.stopped.startswith("stopped: it was running 32 processes")
    assert gone(token, anywhere=True)  # every copy, killed with the sandbox
    assert box.run("echo next", limits=TIGHT) == Said("next\n", 0, "")


def test_a_memory_hog_gets_memory_error(box: Box) -> None:
    said = box.run("python3 -c 'bytearray(1 << 30)'; python3 -c 'print(len(bytearray(32 << 20)))'", limits=TIGHT)

    assert "MemoryError" in said.output
    assert said.output.endswith("33554432\n")  # a fair share still works


def test_shared_memory_held_past_the_memory_limit_gets_its_process_killed(box: Box) -> None:
    # Memory shared between processes is not "data" to the kernel's limit: asm's watch adds it up and
    # kills the process holding it, as the out-of-memory killer would; the command goes on.
    hog = ("python3 -c 'import mmap, time\nsize = 2 * (256 << 20)\nm = mmap.mmap(-1, size)\n"
           "for at in range(0, size, 4096): m[at] = 1\ntime.sleep(5)\nprint(size >> 20, \"MiB still held\")'")
    limits = Limits(processes=32, memory_bytes=256 << 20, cpu_seconds=60)  # memory, not CPU, must stop it

    said = box.run(hog + "; python3 -c 'print(len(bytearray(32 << 20)))'", limits=limits)

    assert "512 MiB still held" not in said.output, "512 MiB of shared memory held under a 256 MiB limit"
    assert "Killed" in said.output
    assert said.output.endswith("33554432\n")  # a fair share still works


def test_dev_shm_works_and_holds_no_more_than_the_memory_limit(box: Box) -> None:
    said = box.run("python3 -c 'import multiprocessing; multiprocessing.Lock(); print(\"lock\")'\n"
                   "for i in $(seq 400); do head -c 1000000 /dev/zero > /dev/shm/f$i || break; done\n"
                   "du -sm /dev/shm", limits=TIGHT)

    assert said.output.startswith("lock\n")  # POSIX semaphores: Python's multiprocessing
    assert "No space left on device" in said.output
    assert int(said.output.split()[-2]) <= TIGHT.memory_bytes >> 20


def test_a_file_past_the_size_limit_fails(box: Box, host: Host) -> None:
    said = box.run("head -c 2000000 /dev/zero > big; head -c 500000 /dev/zero > small", limits=TIGHT)

    assert "File size limit exceeded" in said.output
    assert (host.tree / "big").stat().st_size == TIGHT.file_bytes
    assert (host.tree / "small").stat().st_size == 500000


def test_a_cpu_spinner_is_killed_at_its_cpu_limit(box: Box) -> None:
    said = box.run("python3 -c 'while True: pass'; echo spinner=$?; python3 -c 'print(sum(range(1000)))'",
                   timeout=120, limits=TIGHT)

    assert said.stopped == ""  # its CPU limit ended it, not the timeout
    assert "spinner=137" in said.output or "spinner=152" in said.output  # SIGKILL or SIGXCPU
    assert said.output.endswith("499500\n")


def test_limits_cannot_be_raised_from_inside(box: Box) -> None:
    said = box.run("before=$(ulimit -a); ulimit -u unlimited; ulimit -d unlimited; ulimit -f unlimited; "
                   "ulimit -t unlimited; [ \"$(ulimit -a)\" = \"$before\" ] && echo unchanged", limits=TIGHT)

    assert said.output.count("cannot modify limit") == 4
    assert said.output.endswith("unchanged\n")


def test_a_command_past_its_timeout_is_killed_with_its_children(box: Box, host: Host, token: str) -> None:
    bash = BashTool(WorkingTree(host.tree, SHOWN_ROOT, host.scratch, owner=box.jail.owner), box.jail, timeout=1)

    result = bash({"command": f"sleep {token} & sleep {token} & echo started; wait"})

    assert result.is_error and "timed out after 1s" in result.content and "started" in result.content
    assert gone(token)


# -- privileges ------------------------------------------------------------------------------------------


def test_a_command_has_no_capabilities_and_no_new_privileges(box: Box) -> None:
    said = box.run("grep -E '^(Cap|NoNewPrivs)' /proc/self/status")

    fields = dict(line.split(":\t") for line in said.output.splitlines())
    assert {name: value for name, value in fields.items() if name.startswith("Cap")} == {
        name: "0000000000000000" for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    assert fields["NoNewPrivs"] == "1"


@needs_root
def test_as_root_commands_run_as_the_tool_user_and_setuid_is_not_honoured(box: Box, host: Host) -> None:
    nobody = pwd.getpwnam("nobody")
    setuid_id = host.tree / "id-setuid"
    shutil.copy("/usr/bin/id", setuid_id)
    os.chown(setuid_id, 0, 0)
    setuid_id.chmod(0o4755)  # setuid root, as a repository cannot carry but a planted file could be

    said = box.run("id -u; ./id-setuid; su -c id root < /dev/null; echo su=$?; touch made")

    assert said.output.startswith(f"{nobody.pw_uid}\nuid={nobody.pw_uid}")
    assert "euid=0" not in said.output and "uid=0" not in said.output
    assert "su=1" in said.output
    assert (host.tree / "made").stat().st_uid == nobody.pw_uid


def test_a_nested_user_namespace_is_refused_or_gives_nothing_back(box: Box, host: Host, token: str) -> None:
    name = f"/usr/asm-escape-{token}"
    said = box.run("unshare -rm sh -c '"
                   f"mount -o remount,rw /usr; echo x > {name} && echo WROTE; "
                   "umount -l /workspace && ls -A /workspace; umount -l /usr && ls /usr; "
                   f"cat /proc/{os.getpid()}/environ; id -u'; echo unshare=$?; echo after")

    assert "WROTE" not in said.output and not os.path.lexists(name)
    assert host.secret not in said.output
    assert said.output.endswith("after\n")


# -- the check at start ------------------------------------------------------------------------------


def test_the_check_passes_here() -> None:
    Jail().check()
    Jail(mode="off").check()


@pytest.mark.skipif(not AS_ROOT and not TUN_FOR_ALL, reason="/dev/net/tun is mode 0600 on this machine: "
                    "the network mode works only for a root worker here")
def test_the_check_passes_here_with_the_network_on() -> None:
    Jail(network=True).check()


USERNS_REFUSED = ("bwrap: No permissions to creating new namespace, likely because the kernel does not allow "
                  "non-privileged user namespaces.")


def test_the_check_names_the_fix_when_bwrap_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho '{USERNS_REFUSED}' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    with pytest.raises(SandboxUnavailable) as refused:
        Jail().check()

    message = str(refused.value)
    assert "\n" not in message
    assert USERNS_REFUSED in message and "user namespaces" in message and "ASM_SANDBOX=off" in message


def test_the_check_names_the_fix_when_bwrap_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(SandboxUnavailable, match=r"not installed: install bubblewrap \(Debian/Ubuntu: apt-get"):
        Jail().check()
    Jail(mode="off").check()  # unconfined by choice: nothing to check


@needs_root
def test_the_check_refuses_a_tool_user_that_does_not_exist_or_is_root() -> None:
    with pytest.raises(SandboxUnavailable, match="'asm-no-such-user' does not exist.*ASM_TOOL_USER"):
        Jail(tool_user="asm-no-such-user").check()
    with pytest.raises(SandboxUnavailable, match="must not run as root: set ASM_TOOL_USER"):
        Jail(tool_user="root").check()


def test_the_cost_of_a_sandbox(box: Box) -> None:
    """Measured and printed for `asm bench`'s readers; the machine is shared, so nothing is asserted on time."""
    costs = {}
    for jail in (box.jail, Jail(mode="off")):
        started = time.perf_counter()
        for _ in range(10):
            assert Box(jail, box.host).run("true") == Said("", 0, "")
        costs[jail.describe()] = (time.perf_counter() - started) / 10
    print("".join(f"\n{name}: {seconds * 1000:.1f} ms per command" for name, seconds in costs.items()))


# -- the same attacks from a worker that is not root --------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One command as tests/jail_driver.py ran it, and what of it was still running afterwards."""

    output: str
    exit_code: int
    stopped: str
    survivors: list[int]


@dataclass(frozen=True)
class Driven:
    """What the driver reported: who it ran as, what Jail.check() said, each step by name."""

    uid: int
    check: str
    steps: dict[str, Step]


def drive_as_nobody(base: Path, commands: dict[str, str], network: bool = False, mark: str = "") -> Driven:
    """Run `commands` through a copy of asm's jail, in a worker process that is `nobody`.

    The system's Python runs it: the project's interpreter lives where nobody cannot read.
    """
    package = base / "pkg"
    (package / "asm" / "guard").mkdir(parents=True)
    for name in ("guard/jail.py", "errors.py"):
        shutil.copy(Path(__file__).parents[1] / "asm" / name, package / "asm" / name)
    for init in ("asm/__init__.py", "asm/guard/__init__.py"):
        (package / init).write_text("")  # the real asm/__init__.py imports Celery
    shutil.copy(Path(__file__).with_name("jail_driver.py"), package / "jail_driver.py")
    work = base / "work"
    work.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    for path in (base, *package.rglob("*"), package):
        path.chmod(0o755 if path.is_dir() else 0o644)
    request = {"tree": str(work / "tree"), "scratch": str(work / "tmp"), "network": network,
               "limits": {"processes": 32, "memory_bytes": 256 << 20, "file_bytes": 1 << 20, "cpu_seconds": 5},
               "steps": [{"command": command, "timeout": 60, "mark": mark} for command in commands.values()]}
    runuser = shutil.which("runuser") or "runuser"
    done = subprocess.run([runuser, "-u", "nobody", "--", "/usr/bin/python3", "-I", str(package / "jail_driver.py")],
                          input=json.dumps(request), capture_output=True, text=True, cwd=work, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TMPDIR": str(work)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    return Driven(report["uid"], report["check"],
                  {name: Step(**step) for name, step in zip(commands, report["steps"], strict=True)})


needs_a_root_test_run = pytest.mark.skipif(
    not AS_ROOT or shutil.which("runuser") is None or not os.access("/usr/bin/python3", os.X_OK),
    reason="starting an unprivileged worker takes root, runuser and /usr/bin/python3")


@dataclass(frozen=True)
class Unprivileged:
    """The attacks, run once from an unprivileged worker, and what the host held around them."""

    driven: Driven
    tree: Path
    mark: str
    greeting: str


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[Unprivileged]:
    mark = f"9{secrets.randbelow(10**7):07d}.5"
    greeter = Greeter("127.0.0.1")
    base = Path(tempfile.mkdtemp(prefix="asm-unprivileged-"))
    worker = os.getpid()
    commands = {
        "tree": "echo honest > made.txt && cat made.txt && id -u",
        "processes": f"echo $(ps -e -o comm=); test -e /proc/{worker} && echo SEEN-WORKER; kill -9 {worker}; "
                     "echo kill=$?",
        "detached": f"setsid env -i sleep {mark} > /dev/null 2>&1 &\nnohup sleep {mark} > /dev/null 2>&1 &\n"
                    + wait_for(mark),
        "loopback": PROBE.format(targets=greeter.target),
        "userns": "unshare -U true; echo plain=$?; unshare -r true; echo mapped=$?",
        "bomb": ":(){ :|:& };:; sleep 60",
        "next": "echo next",
        "privileges": "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status\n"
                      "for p in /usr/x /etc/x /x /dev/x; do (echo x > $p) 2>/dev/null && echo WROTE $p; done; true",
    }
    try:
        yield Unprivileged(drive_as_nobody(base, commands, mark=mark), base / "work" / "tree", mark, greeter.word)
    finally:
        greeter.close()
        kill_all(mark)
        shutil.rmtree(base)


@needs_a_root_test_run
def test_an_unprivileged_worker_runs_its_commands_in_a_user_namespace(unprivileged: Unprivileged) -> None:
    driven = unprivileged.driven
    assert driven.uid == pwd.getpwnam("nobody").pw_uid and driven.check == ""
    assert driven.steps["tree"] == Step(f"honest\n{driven.uid}\n", 0, "", [])
    assert (unprivileged.tree / "made.txt").stat().st_uid == driven.uid


@needs_a_root_test_run
def test_an_unprivileged_workers_commands_see_no_host_process_and_keep_none(unprivileged: Unprivileged) -> None:
    processes = unprivileged.driven.steps["processes"].output
    names = processes.splitlines()[0].split()
    assert "ps" in names and len(names) < 10 and "python3" not in names
    assert "SEEN-WORKER" not in processes and "kill=1" in processes
    assert unprivileged.driven.steps["detached"] == Step("started\n", 0, "", [])  # no survivor right after
    assert running(unprivileged.mark) == []


@needs_a_root_test_run
def test_an_unprivileged_workers_commands_cannot_reach_the_hosts_loopback(unprivileged: Unprivileged) -> None:
    said = unprivileged.driven.steps["loopback"].output
    assert list(reached(said).values()) == ["FAIL ECONNREFUSED"]
    assert unprivileged.greeting not in said


@needs_a_root_test_run
def test_an_unprivileged_workers_commands_get_no_nested_user_namespace(unprivileged: Unprivileged) -> None:
    said = unprivileged.driven.steps["userns"].output
    assert "plain=1" in said and "mapped=1" in said  # --disable-userns


@needs_a_root_test_run
def test_an_unprivileged_workers_fork_bomb_is_stopped(unprivileged: Unprivileged) -> None:
    assert unprivileged.driven.steps["bomb"].stopped.startswith("stopped: it was running 32 processes")
    assert unprivileged.driven.steps["next"].output == "next\n"


@needs_a_root_test_run
def test_an_unprivileged_workers_commands_have_no_privilege_and_write_nothing_outside(
        unprivileged: Unprivileged) -> None:
    said = unprivileged.driven.steps["privileges"].output
    assert "CapEff:\t0000000000000000" in said and "NoNewPrivs:\t1" in said
    assert "WROTE" not in said  # nor into bwrap's own tmpfs: memory of no limit


@needs_a_root_test_run
@pytest.mark.skipif(not TUN_FOR_ALL, reason="/dev/net/tun is mode 0600 on this machine: slirp4netns cannot "
                    "open it for a worker that is not root, so the network mode is a root worker's here")
def test_an_unprivileged_workers_network_reaches_out_but_never_the_hosts_loopback(
        loopback_greeter: Greeter, outside_greeter: Greeter) -> None:
    base = Path(tempfile.mkdtemp(prefix="asm-unprivileged-"))
    refused = [loopback_greeter.target, f"10.0.2.2:{loopback_greeter.target.rsplit(':', 1)[1]}"]
    try:
        driven = drive_as_nobody(base, {"probe": "cat /etc/resolv.conf\n" + PROBE.format(
            targets=" ".join([outside_greeter.target, *refused]))}, network=True)
    finally:
        shutil.rmtree(base)
    said = driven.steps["probe"].output
    results = reached(said)
    assert driven.check == "" and said.startswith("nameserver 10.0.2.3\n")
    assert results[outside_greeter.target] == f"OK {outside_greeter.word}"
    assert all(results[target].startswith("FAIL") for target in refused), results


@needs_a_root_test_run
def test_an_unprivileged_workers_check_says_when_the_network_cannot_be_had() -> None:
    if TUN_FOR_ALL:
        pytest.skip("/dev/net/tun is open to every user here: the network mode works without root")
    base = Path(tempfile.mkdtemp(prefix="asm-unprivileged-"))
    try:
        driven = drive_as_nobody(base, {}, network=True)
    finally:
        shutil.rmtree(base)
    assert driven.check.startswith("ASM_TOOL_NETWORK=on, but slirp4netns gave the sandbox no network")
    assert "/dev/net/tun" in driven.check
