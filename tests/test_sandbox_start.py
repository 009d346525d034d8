"""A worker that cannot confine tool commands does not start; one that runs unconfined by choice says so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import redis

from asm.config import Settings
from asm.observe.status import read_workers
from asm.sandbox.fleet import Sandbox, wait_for


def fake_bwrap(folder: Path) -> str:
    """A PATH on which `bwrap` is there but refused by the kernel, as with user namespaces disabled."""
    folder.mkdir()
    (folder / "bwrap").write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    (folder / "bwrap").chmod(0o755)
    return f"{folder}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:{Path(sys.executable).parent}"


def test_a_worker_whose_bwrap_does_not_work_refuses_to_start_saying_how_to_fix_it(sandbox: Sandbox,
                                                                                   tmp_path: Path) -> None:
    worker = sandbox.start_worker(1, "nobwrap", PATH=fake_bwrap(tmp_path / "bin"))

    assert worker.process.wait(timeout=60) == 2
    said = [line for line in worker.log().splitlines() if line.startswith("asm:")]
    assert len(said) == 1
    assert "will not start" in said[0] and "uid map" in said[0]
    assert "apt-get install bubblewrap" in said[0] and "ASM_SANDBOX=off" in said[0]
    assert read_workers(redis.Redis.from_url(sandbox.redis_url)) == []


def test_the_worker_reports_its_sandbox_and_status_shows_it(sandbox: Sandbox, settings: Settings,
                                                            asm_command) -> None:
    sandbox.create_repo()
    sandbox.start_ready_worker(1, "confined")

    shown = json.loads(asm_command(sandbox, "status", "--json").stdout)

    [worker] = shown["workers"]
    assert worker["sandbox"].startswith("bwrap (network off, as ")
    assert shown["unsandboxed"] == []
    assert "sandbox bwrap" in asm_command(sandbox, "status").stdout


def test_an_unconfined_worker_by_explicit_choice_starts_warns_and_shows_everywhere(sandbox: Sandbox,
                                                                                   settings: Settings,
                                                                                   asm_command) -> None:
    sandbox.create_repo()
    worker = sandbox.start_ready_worker(1, "open", ASM_SANDBOX="off")

    assert wait_for(lambda: "UNCONFINED" in worker.log(), 30)
    shown = json.loads(asm_command(sandbox, "status", "--json").stdout)
    assert shown["unsandboxed"] == [shown["workers"][0]["worker"]]
    assert "UNSANDBOXED" in asm_command(sandbox, "status").stdout


def without(program: str, folder: Path) -> str:
    """A PATH with every program of the machine's but `program`."""
    folder.mkdir()
    for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin",
                      str(Path(sys.executable).parent)):
        for entry in Path(directory).iterdir() if Path(directory).is_dir() else ():
            if entry.name != program and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return str(folder)


def test_a_worker_without_slirp4netns_starts_and_says_a_setup_script_will_fail(sandbox: Sandbox,
                                                                              tmp_path: Path) -> None:
    sandbox.create_repo()
    worker = sandbox.start_ready_worker(1, "noslirp", PATH=without("slirp4netns", tmp_path / "bin"))

    assert wait_for(lambda: "slirp4netns is not installed" in worker.log(), 30)
    assert ".asm/setup.sh" in worker.log() and "apt-get install slirp4netns" in worker.log()
