"""The sandbox every tool command of the agents runs in: bubblewrap (`bwrap`), no Docker needed.

One command, one sandbox, gone when the command returns:
- its own PID namespace: it sees only its own processes, and everything it started dies with
  the namespace's init when the call returns, however it detached;
- its own mount namespace: the system read-only (/usr, /etc, /opt and the worker's Python), the
  issue's working tree writable at /workspace and the issue's own scratch at /tmp; nothing else of
  asm's exists in it (mirrors, other workspaces, transcripts, the worker's folder, .env, HOME);
- its own network namespace: only a loopback of its own, so no service of the host (Redis,
  Flower) is reachable; ASM_TOOL_NETWORK=on adds slirp4netns for outbound traffic, with the
  host's loopback refused;
- its own IPC and UTS namespaces, no capabilities, no new privileges, as an unprivileged user (the
  worker's own, or ASM_TOOL_USER, by default `nobody`, when the worker runs as root);
- limits on processes, memory, file size and CPU time.
With ASM_SANDBOX=off, by explicit choice, commands run unconfined (the worker says so everywhere).
"""

from __future__ import annotations

import json
import os
import pwd
import resource
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from asm.errors import SandboxUnavailable

SHOWN_ROOT = "/workspace"  # where the working tree appears to tool commands and the model
SCRATCH = "/tmp"  # the issue's own scratch, kept between its commands
HOME = "/tmp/home"
SYSTEM_DIRS = ("/usr", "/etc", "/opt")
MERGED_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # symlinks into /usr on most systems
DEFAULT_TOOL_USER = "nobody"
WATCH_SECONDS = 0.25  # how often a running command's process count is looked at
RUN_MARKER = "ASM_TOOL_RUN"
SLIRP_ADDRESS = "10.0.2.3"  # slirp4netns's DNS forwarder
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), "
                "or set ASM_SANDBOX=off to run the agents' commands unconfined")


@dataclass(frozen=True)
class Limits:
    """What one tool command may use: processes in all, and memory, file size and CPU time each."""

    processes: int = 512
    memory_bytes: int = 8 << 30
    file_bytes: int = 1 << 30
    cpu_seconds: int = 600

    def shell_prefix(self, shared_user: bool) -> str:
        """bash builtins that set the limits, run inside the sandbox so they bind its processes alone.

        `ulimit -u` counts every process of the user: in a user namespace of its own (a worker not
        running as root) that is this command's processes; for a tool user shared by every sandbox
        of the machine it is all of them, so it gets room for the others and the watch enforces
        `processes` for this command.
        """
        nproc = self.processes * (8 if shared_user else 1) + 64
        wanted = {"u": (resource.RLIMIT_NPROC, nproc), "d": (resource.RLIMIT_DATA, self.memory_bytes // 1024),
                  "f": (resource.RLIMIT_FSIZE, self.file_bytes // 1024), "t": (resource.RLIMIT_CPU, self.cpu_seconds)}
        parts = []
        for flag, (kind, value) in wanted.items():
            hard = resource.getrlimit(kind)[1]
            scale = 1024 if flag in "df" else 1
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard // scale)  # a limit can be lowered, never raised
            parts.append(f"-{flag} {value}")
        return f"ulimit {' '.join(parts)}\n"


@dataclass(frozen=True)
class Finished:
    """How a command ended: its exit code, and why asm stopped it, if it did."""

    exit_code: int
    stopped: str = ""
    notes: tuple[str, ...] = ()  # what asm did to it meanwhile (a process killed for its memory)


class Jail:
    """How this machine confines tool commands: bubblewrap, or nothing when ASM_SANDBOX=off."""

    def __init__(self, mode: str = "bwrap", network: bool = False, tool_user: str = "",
                 limits: Limits = Limits(), hidden: Iterable[Path] = ()) -> None:
        self.mode = mode
        self.network = network
        self.limits = limits
        # asm's own paths that must not show even when they lie under a system directory.
        self.hidden = tuple(Path(os.path.abspath(path)) for path in hidden)
        self.as_root = os.geteuid() == 0
        # Confined, a root worker's commands run as an unprivileged user, `nobody` unless told; unconfined
        # by choice, they run as the worker unless ASM_TOOL_USER names someone.
        self.tool_user = tool_user or (DEFAULT_TOOL_USER if self.as_root and mode != "off" else "")
        self.identity = _identity(self.tool_user) if self.as_root and self.tool_user else None

    @property
    def confined(self) -> bool:
        return self.mode != "off"

    @property
    def owner(self) -> tuple[int, int] | None:
        """(uid, gid) the working tree must belong to: the tool user's, when not the worker's own."""
        return self.identity

    def describe(self) -> str:
        """One line for `asm status` and the worker's log."""
        if not self.confined:
            return "off (tool commands unconfined)"
        who = self.tool_user or pwd.getpwuid(os.geteuid()).pw_name
        return f"bwrap (network {'on' if self.network else 'off'}, as {who})"

    # -- the check at start --------------------------------------------------------------------

    def check(self) -> None:
        """Raise SandboxUnavailable, saying what to do, unless a sandboxed command really runs here."""
        if not self.confined:
            return
        if shutil.which("bwrap") is None:
            raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
        if self.as_root and shutil.which("setpriv") is None:
            raise SandboxUnavailable("setpriv (util-linux) is needed to run tool commands as "
                                     f"{self.tool_user}: install util-linux")
        if self.network and shutil.which("slirp4netns") is None:
            raise SandboxUnavailable("ASM_TOOL_NETWORK=on needs slirp4netns: install it "
                                     "(Debian/Ubuntu: apt-get install slirp4netns)")
        with tempfile.TemporaryDirectory(prefix="asm-sandbox-check-") as scratch_dir:
            tree, scratch = Path(scratch_dir) / "tree", Path(scratch_dir) / "tmp"
            prepare(tree, scratch, self.owner)
            # slirp4netns names the sandbox's interface tap0; without it the command would run offline, silently.
            probe = "test -w . && test -w /tmp && echo ok" + ("; grep -q tap0 /proc/net/dev && echo online"
                                                              if self.network else "")
            with tempfile.TemporaryFile() as output:
                done = self.run(probe, tree, scratch, tool_environment(), output, timeout=60)
                output.seek(0)
                said = output.read().decode(errors="replace").strip()
        lines = said.splitlines()
        if done.stopped or "ok" not in lines:
            raise SandboxUnavailable(f"bubblewrap did not run a command here ({said[-300:] or done.stopped}); "
                                     "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1; "
                                     "on Ubuntu 24.04+, allow bwrap in AppArmor), or " + INSTALL_HINT)
        if self.network and "online" not in lines:
            raise SandboxUnavailable("ASM_TOOL_NETWORK=on, but slirp4netns gave the sandbox no network: a worker "
                                     "that is not root needs read and write access to /dev/net/tun; run the worker "
                                     "as root, or set ASM_TOOL_NETWORK=off")

    # -- one command ---------------------------------------------------------------------------

    def run(self, command: str, tree: Path, scratch: Path, env: Mapping[str, str], stdout: IO[bytes],
            stderr: IO[bytes] | int = subprocess.STDOUT, timeout: float = 180.0,
            limits: Limits | None = None, network: bool | None = None) -> Finished:
        """Run `command` with bash in the sandbox, the working tree as its cwd; wait at most `timeout`.

        `network` overrides the jail's own for this one command (the repository's setup script gets it).
        """
        limits = limits or self.limits
        network = self.network if network is None else network
        if network and self.confined and shutil.which("slirp4netns") is None:
            raise SandboxUnavailable("a command with network needs slirp4netns: install it "
                                     "(Debian/Ubuntu: apt-get install slirp4netns)")
        script = limits.shell_prefix(shared_user=self.as_root) + command
        if not self.confined:
            return self._run_unconfined(script, tree, env, stdout, stderr, timeout, limits)
        with _pipes() as pipes:
            info_read, info_write = pipes.pipe()
            # Found on the worker's PATH, as check() found it: `env` (the command's own) must not choose it.
            bwrap = shutil.which("bwrap") or "bwrap"
            arguments = [bwrap, *self._namespaces(), "--info-fd", str(info_write),
                         *self._layout(tree, scratch, limits)]
            passed = [info_write]
            if network:
                # The command waits on block-fd until slirp4netns has brought its interface up.
                block_read, block_write = pipes.pipe()
                resolv_read, resolv_write = pipes.pipe()
                os.write(resolv_write, f"nameserver {SLIRP_ADDRESS}\n".encode())
                pipes.close(resolv_write)
                arguments += ["--block-fd", str(block_read), "--perms", "0644", "--ro-bind-data", str(resolv_read),
                              "/etc/resolv.conf"]
                passed += [block_read, resolv_read]
            arguments += self._as_tool_user() + ["bash", "-c", script]
            process = subprocess.Popen(arguments, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout,
                                       stderr=stderr, pass_fds=passed, start_new_session=True)
            for fd in passed:
                pipes.close(fd)
            child = _child_pid(info_read)
            slirp = None
            try:
                if network:
                    if child and _loopback_set_up(child):
                        # slirp4netns ends when this pipe closes: with the worker too, should it die meanwhile.
                        exit_read, _ = pipes.pipe()
                        slirp = _start_slirp(child, exit_read)
                        pipes.close(exit_read)
                    try:
                        os.write(block_write, b"1")
                    except BrokenPipeError:
                        pass  # bwrap failed before it waited: its exit code and message say why
                return _watch(process, child, timeout, limits)
            finally:
                if slirp is not None:
                    slirp.kill()
                    slirp.wait()

    def _namespaces(self) -> list[str]:
        return ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--unshare-net",
                "--hostname", "sandbox", "--die-with-parent", "--new-session"]

    def _as_tool_user(self) -> list[str]:
        """The end of bwrap's arguments: who the command runs as."""
        if self.identity is None:
            # A user namespace of the sandbox's own, mapping the worker's uid; none nested inside it.
            return ["--unshare-user", "--disable-userns", "--"]
        uid, gid = self.identity
        # bwrap run by root keeps the uid; setpriv drops to the tool user with every capability gone.
        return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
                "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]

    def _layout(self, tree: Path, scratch: Path, limits: Limits) -> list[str]:
        """The sandbox's file system: the system read-only, the tree and the scratch, nothing else."""
        shown: list[Path] = []
        arguments: list[str] = []
        scaffolding = ["/dev", "/"]  # bwrap's own tmpfs mounts, read-only once built
        for directory in SYSTEM_DIRS:
            if os.path.isdir(directory):
                arguments += ["--ro-bind", directory, directory]
                shown.append(Path(directory))
        for directory in MERGED_DIRS:
            if os.path.islink(directory):
                arguments += ["--symlink", os.readlink(directory), directory]
            elif os.path.isdir(directory):
                arguments += ["--ro-bind", directory, directory]
                shown.append(Path(directory))
        for path in self.hidden:  # asm's own files under a system directory: covered up
            if any(path != top and top in path.parents for top in shown) and path.exists():
                if path.is_dir():
                    arguments += ["--tmpfs", str(path)]
                    scaffolding.insert(0, str(path))
                else:
                    arguments += ["--ro-bind", "/dev/null", str(path)]
        made = {Path("/")} | set(shown)
        for prefix in _python_prefixes():
            if any(prefix == top or top in prefix.parents for top in shown) and not self._covered(prefix):
                continue
            for parent in reversed(prefix.parents):
                if parent not in made:
                    arguments += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            arguments += ["--ro-bind", str(prefix), str(prefix)]
        # /dev/shm as on any Linux (POSIX semaphores: Python's multiprocessing), in memory: sized like a process.
        arguments += ["--proc", "/proc", "--dev", "/dev",
                      "--perms", "1777", "--size", str(limits.memory_bytes), "--tmpfs", "/dev/shm",
                      "--bind", str(scratch), SCRATCH, "--bind", str(tree), SHOWN_ROOT, "--chdir", SHOWN_ROOT]
        # Writable, they would be memory of no size limit whenever the sandbox's user owns them (a non-root worker).
        for mount in scaffolding:
            arguments += ["--remount-ro", mount]
        return arguments

    def _covered(self, path: Path) -> bool:
        return any(path == hidden or hidden in path.parents for hidden in self.hidden)

    def _run_unconfined(self, script: str, tree: Path, env: Mapping[str, str], stdout: IO[bytes],
                        stderr: IO[bytes] | int, timeout: float, limits: Limits) -> Finished:
        """ASM_SANDBOX=off: the command runs on the host, in its own process group, as the tool user if set."""
        marker = secrets.token_hex(8)
        identity: dict[str, Any] = (
            {"user": self.identity[0], "group": self.identity[1], "extra_groups": []} if self.identity else {})
        process = subprocess.Popen(["bash", "-c", script], cwd=tree, env={**env, RUN_MARKER: marker},
                                   stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True,
                                   **identity)
        try:
            return _watch(process, None, timeout, limits)
        finally:
            _kill_marked(marker)


def prepare(tree: Path, scratch: Path, owner: tuple[int, int] | None) -> None:
    """Make the directories a sandbox binds (the tree and the scratch with its HOME), owned by `owner`."""
    for path in (tree, scratch, scratch / Path(HOME).name):
        path.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        for top in (tree, scratch):
            for directory, _, files in os.walk(top):
                for name in (directory, *(os.path.join(directory, f) for f in files)):
                    os.lchown(name, *owner)


def tool_environment(inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for tool commands: an allow-list, never the worker's secrets."""
    source = os.environ if inherited is None else inherited
    env = {name: source[name] for name in ("LANG", "LC_ALL", "TZ") if name in source}
    # The worker's own Python comes first, so `python` is a real interpreter of a known version.
    path = [os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin"]
    env.update(
        PATH=os.pathsep.join(dict.fromkeys(path)),
        HOME=HOME,
        TMPDIR=SCRATCH,
        TERM="dumb",
        PAGER="cat",
        GIT_PAGER="cat",
        GIT_TERMINAL_PROMPT="0",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("LANG", "C.UTF-8")
    return env


def _identity(user: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise SandboxUnavailable(f"the tool user {user!r} does not exist on this machine (ASM_TOOL_USER)") from None
    if entry.pw_uid == 0:
        raise SandboxUnavailable("tool commands must not run as root: set ASM_TOOL_USER to an unprivileged user")
    return entry.pw_uid, entry.pw_gid


def _python_prefixes() -> list[Path]:
    """Where the worker's Python lives (a venv and its base), for `python` inside the sandbox."""
    found = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parent.parent}
    return sorted(Path(os.path.realpath(path)) for path in found)


def _watch(process: subprocess.Popen[bytes], child: int | None, timeout: float, limits: Limits) -> Finished:
    """Wait for the command; stop it at the timeout or when it holds `processes` processes (a fork bomb).

    Memory shared between processes escapes the per-process limit (RLIMIT_DATA counts private memory
    only, and a limit on address space would break every JVM and WebAssembly runtime), so the watch
    also adds up what the sandbox's processes hold and, past the limit, kills the biggest, as the
    kernel's out-of-memory killer would: the command goes on and sees that process killed.
    """
    deadline = time.monotonic() + timeout
    namespace = _pid_namespace(child) if child else None
    notes: list[str] = []
    while True:
        try:
            code = process.wait(timeout=max(0.0, min(WATCH_SECONDS, deadline - time.monotonic())))
            # The namespace's init outlives bwrap by a moment: until it is gone, so is nothing else yet.
            _wait_gone(child)
            return Finished(code, notes=tuple(notes))
        except subprocess.TimeoutExpired:
            pass
        census = _census(namespace, limits.processes) if namespace is not None else None
        if time.monotonic() >= deadline:
            stopped = f"timed out after {timeout:g}s and was killed"
        elif census is not None and census.processes >= limits.processes:
            stopped = f"stopped: it was running {limits.processes} processes, the most a command may (a fork bomb?)"
        elif census is not None and census.memory > limits.memory_bytes and census.biggest is not None:
            _kill(census.biggest[0])
            notes.append(f"process {census.biggest[0]} was killed holding {census.biggest[1] >> 20} MiB: the "
                         f"command's processes together may hold {limits.memory_bytes >> 20} MiB")
            continue
        else:
            continue
        for pid in filter(None, (child, process.pid)):
            _kill(pid)
        _kill(-process.pid)
        process.wait()
        _wait_gone(child)
        return Finished(process.returncode, stopped, tuple(notes))


@dataclass(frozen=True)
class _Census:
    """What a sandbox's processes amount to right now."""

    processes: int
    memory: int  # bytes of private and shared memory they hold (what two of them share counts twice)
    biggest: tuple[int, int] | None  # (pid, bytes) of the one holding the most


def _pid_namespace(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def _census(namespace: int, enough: int) -> _Census:
    """Count the processes of a PID namespace (no further than `enough`) and the memory they hold."""
    count, memory, biggest = 0, 0, None
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/pid").st_ino != namespace:
                continue
            held = _memory_held(entry.name)
        except OSError:
            continue  # gone meanwhile
        count += 1
        memory += held
        if biggest is None or held > biggest[1]:
            biggest = (int(entry.name), held)
        if count >= enough:
            break
    return _Census(count, memory, biggest)


def _memory_held(pid: str) -> int:
    """Anonymous and shared memory a process holds (its files' pages are the page cache's, not its own)."""
    held = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("RssAnon:", "RssShmem:")):
                held += int(line.split()[1]) * 1024
    return held


def _wait_gone(pid: int | None, timeout: float = 2.0) -> None:
    """Until the sandbox's init has died (a zombie counts): the kernel ends an init only once every
    other process of its namespace has ended, so then nothing of the command outlives the call."""
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.005)


def _kill(pid: int) -> None:
    try:
        if pid < 0:
            os.killpg(-pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# A process in the middle of an exec shows an empty environment for an instant, so one sweep of /proc
# can miss it: sweeps go on until this many in a row find nothing (or MARKED_SWEEPS_MAX were made).
MARKED_QUIET_SWEEPS = 3
MARKED_SWEEPS_MAX = 50


def _kill_marked(marker: str) -> None:
    """Unconfined only: kill what escaped the process group but still carries this run's marker (best
    effort: a process that scrubbed its environment is out of reach without a PID namespace)."""
    needle = f"{RUN_MARKER}={marker}".encode()
    quiet = 0
    for _ in range(MARKED_SWEEPS_MAX):
        if _kill_marked_once(needle):
            quiet = 0
        else:
            quiet += 1
            if quiet == MARKED_QUIET_SWEEPS:
                return
        time.sleep(0.005)


def _kill_marked_once(needle: bytes) -> bool:
    """One sweep of /proc; whether it found a marked process."""
    found = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle in environ.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
        except (OSError, ValueError):
            continue
    return found


def _child_pid(info: int, timeout: float = 30.0) -> int | None:
    """The sandbox's init as the host sees it, from bwrap's --info-fd; None if bwrap failed first."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([info], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(info, 4096)
        if not chunk:
            break
        data += chunk
        try:
            return int(json.loads(data)["child-pid"])
        except (ValueError, KeyError):
            continue  # not all of it yet
    return None


def _loopback_set_up(child: int, timeout: float = 10.0) -> bool:
    """Wait until bwrap has given the sandbox's loopback its address; False if bwrap is gone meanwhile.

    bwrap does so after telling the child's pid, and fails ("loopback: Failed RTM_NEWADDR") if
    slirp4netns brings `lo` up first, since the kernel then gives it 127.0.0.1 itself.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/net/fib_trie") as routes:
                if "127.0.0.1" in routes.read():
                    return True
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot look: start slirp4netns as before
        time.sleep(0.002)
    return True


def _start_slirp(child: int, exit_fd: int) -> subprocess.Popen[bytes]:
    """Outbound network for the sandbox's namespace, with the host's loopback refused, until `exit_fd` closes."""
    ready_read, ready_write = os.pipe()
    try:
        slirp = subprocess.Popen(
            ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox",
             "--enable-seccomp", f"--ready-fd={ready_write}", f"--exit-fd={exit_fd}", str(child), "tap0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=[ready_write, exit_fd], start_new_session=True)
        os.close(ready_write)
        ready, _, _ = select.select([ready_read], [], [], 10.0)
        if ready:
            os.read(ready_read, 1)
        return slirp
    finally:
        os.close(ready_read)


class _Pipes:
    """Pipe ends opened for one sandbox, each closed exactly once."""

    def __init__(self) -> None:
        self.open: set[int] = set()

    def pipe(self) -> tuple[int, int]:
        read, write = os.pipe()
        self.open.update((read, write))
        return read, write

    def close(self, fd: int) -> None:
        if fd in self.open:
            self.open.discard(fd)
            os.close(fd)


@contextmanager
def _pipes() -> Iterator[_Pipes]:
    pipes = _Pipes()
    try:
        yield pipes
    finally:
        for fd in list(pipes.open):
            pipes.close(fd)
