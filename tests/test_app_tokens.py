"""A GitHub App's installation tokens shared by the fleet through a real Redis, sealed with the App's key: one token
per installation for every process (so the scan's fleet-wide ETags, which GitHub keeps per credential, match), never
readable in Redis, a record altered or sealed with another key never used, a renewal made once for all, and each
process minting its own, as before, when Redis fails or another process is slow to mint."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from pathlib import Path

import github
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from asm.config import Settings
from asm.deps import github_gateway
from asm.deps import redis_client as make_redis
from asm.fleet.scan import FollowRules, ScanResult, scan
from asm.github import GitHub
from asm.github_app import MINT_WAIT_SECONDS, REFRESH_MARGIN_SECONDS, AppAccess, AppKey
from asm.keys import app_token_key
from asm.sandbox.fleet import Sandbox, point_process_at

APP_ID = 4712
SLUG = "asm-shared"
ACME = tuple(f"acme/repo{n}" for n in range(6))
GLOBEX = tuple(f"globex/repo{n}" for n in range(4))


def pem(key: rsa.RSAPrivateKey, form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> str:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def installed(sandbox: Sandbox, key: rsa.RSAPrivateKey) -> dict[str, int]:
    """The App on ten repositories, in two installations, each repository with an issue ready for asm."""
    apps = sandbox.github.apps
    apps.create_app(SLUG, key.public_key(), app_id=APP_ID)
    for name in (*ACME, *GLOBEX):
        sandbox.create_repo(name)
        sandbox.add_issue(name, f"ready in {name}")
    return {"acme": apps.install(APP_ID, "acme", list(ACME)), "globex": apps.install(APP_ID, "globex", list(GLOBEX))}


@pytest.fixture
def app_settings(sandbox: Sandbox, installed: dict[str, int], key: rsa.RSAPrivateKey, tmp_path: Path) -> Settings:
    path = tmp_path / "app.pem"
    path.write_text(pem(key))
    return point_process_at(sandbox, ASM_REPOS="", GITHUB_TOKEN="", ASM_GITHUB_APP_ID=str(APP_ID),
                            ASM_GITHUB_APP_PRIVATE_KEY_PATH=str(path))


def process(sandbox: Sandbox, key: rsa.RSAPrivateKey, fleet: redis.Redis | None,
            form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> AppAccess:
    """What one worker process builds: its own AppKey (read from the key's PEM) and clients, on the sandbox's clock."""
    url = sandbox.settings().github_url
    connect = lambda auth: github.Github(auth=auth, base_url=url, seconds_between_writes=0)  # noqa: E731
    clock = lambda: sandbox.github.clock.now().timestamp()  # noqa: E731
    return AppAccess(str(APP_ID), AppKey(pem(key, form)), connect, clock=clock, fleet=fleet)


def minted(sandbox: Sandbox, installation: int) -> list[str]:
    return [token.value for token in sandbox.github.apps.minted if token.installation == installation]


def test_two_processes_share_one_token_per_installation_and_redis_never_holds_it_readable(
        sandbox: Sandbox, installed: dict[str, int], key: rsa.RSAPrivateKey, redis_client: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # The key file in either PEM form GitHub's users keep it in: the sealing key is the same.
    one = process(sandbox, key, redis_client)
    two = process(sandbox, key, redis_client, serialization.PrivateFormat.TraditionalOpenSSL)
    for installation in installed.values():
        token = one.token(installation)
        assert two.token(installation) == token == one.token(installation)
        assert minted(sandbox, installation) == [token]
    tokens = [token.value for token in sandbox.github.apps.minted]
    stored = {name: redis_client.get(name) or b"" for name in redis_client.keys("asm:app-token:*")}
    assert set(stored) == {app_token_key(str(APP_ID), n).encode() for n in installed.values()}
    for record in stored.values():
        for token in tokens:
            raw = token.encode()
            assert raw not in record and raw[4:] not in record and raw.hex().encode() not in record
            for shift in range(3):  # base64 of it, at each of the three alignments it could start at
                for encode in (base64.b64encode, base64.urlsafe_b64encode):
                    assert encode(b"\0" * shift + raw)[4:-4] not in record
    assert not any(token in caplog.text for token in tokens)
    assert "<not shown>" in repr(one._tokens[installed["acme"]])  # what a traceback's locals would show


def test_many_processes_asking_at_once_mint_one_token(sandbox: Sandbox, installed: dict[str, int],
                                                       key: rsa.RSAPrivateKey, redis_client: redis.Redis) -> None:
    processes = [process(sandbox, key, redis_client) for _ in range(6)]
    got: list[str] = []
    start = threading.Barrier(len(processes))

    def ask(access: AppAccess) -> None:
        start.wait()
        got.append(access.token(installed["globex"]))

    threads = [threading.Thread(target=ask, args=(access,)) for access in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(got) == len(processes) and len(set(got)) == 1
    assert minted(sandbox, installed["globex"]) == got[:1]


def test_a_record_altered_sealed_with_another_key_or_of_another_installation_is_not_used(
        sandbox: Sandbox, installed: dict[str, int], key: rsa.RSAPrivateKey, redis_client: redis.Redis) -> None:
    acme, globex = installed["acme"], installed["globex"]
    name = app_token_key(str(APP_ID), acme)
    first = process(sandbox, key, redis_client).token(acme)
    sealed = redis_client.get(name)
    assert sealed is not None
    altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    other = AppKey(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    forged = json.dumps({"token": "ghs_" + "F" * 36, "expires_at": 4e9, "renew_at": 4e9}).encode()
    for planted in (altered, b"short", other.seal(forged, name.encode())):
        redis_client.set(name, planted)
        fresh = process(sandbox, key, redis_client).token(acme)
        assert fresh not in (first, "ghs_" + "F" * 36) and fresh == minted(sandbox, acme)[-1]
        assert process(sandbox, key, redis_client).token(acme) == fresh  # and it is shared in its place
    assert len(minted(sandbox, acme)) == 4
    # acme's record, copied to globex's name, is bound to acme: globex gets a token of its own.
    redis_client.set(app_token_key(str(APP_ID), globex), redis_client.get(name) or b"")
    assert process(sandbox, key, redis_client).token(globex) == minted(sandbox, globex)[-1]


def test_a_token_near_its_end_is_renewed_once_for_every_process(
        sandbox: Sandbox, installed: dict[str, int], key: rsa.RSAPrivateKey, redis_client: redis.Redis) -> None:
    acme = installed["acme"]
    one, two = process(sandbox, key, redis_client), process(sandbox, key, redis_client)
    first = one.token(acme)
    assert two.token(acme) == first
    sandbox.github.advance(3600 - REFRESH_MARGIN_SECONDS - 60)
    assert one.token(acme) == two.token(acme) == first
    sandbox.github.advance(120)  # within the margin: one process renews it, the other takes the renewal
    second = one.token(acme)
    assert second != first and two.token(acme) == second == one.token(acme)
    assert minted(sandbox, acme) == [first, second]


def test_without_redis_each_process_mints_its_own_as_before(sandbox: Sandbox, installed: dict[str, int],
                                                             key: rsa.RSAPrivateKey) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = make_redis(f"redis://127.0.0.1:{port}/0", patient=False)  # as asm.deps gives the App's access
    one, two = process(sandbox, key, gone), process(sandbox, key, gone)
    started = time.monotonic()
    token = one.token(installed["acme"])
    assert one.token(installed["acme"]) == token  # kept in the process
    assert two.token(installed["acme"]) != token
    assert len(minted(sandbox, installed["acme"])) == 2 and time.monotonic() - started < MINT_WAIT_SECONDS


def test_a_process_waits_briefly_for_another_s_mint_then_mints_its_own(
        sandbox: Sandbox, installed: dict[str, int], key: rsa.RSAPrivateKey, redis_client: redis.Redis) -> None:
    name = app_token_key(str(APP_ID), installed["acme"])
    redis_client.set(name + ":minting", "a process that died minting", px=60_000)
    started = time.monotonic()
    token = process(sandbox, key, redis_client).token(installed["acme"])
    waited = time.monotonic() - started
    assert MINT_WAIT_SECONDS <= waited < MINT_WAIT_SECONDS + 3
    assert minted(sandbox, installed["acme"]) == [token]


# -- the scan: two processes in turn, with the sandbox's per-credential ETags ----------------------------------


def run_scan(gateway: GitHub, client: redis.Redis) -> ScanResult:
    from asm.celery_app import app

    return scan(gateway, client, app, (), "ready-for-dev", 600, FollowRules(), 60)


@pytest.mark.parametrize("shared", [False, True], ids=["token-per-process", "token-shared"])
def test_two_processes_scanning_in_turn_get_304s_for_unchanged_repositories_only_with_a_shared_token(
        sandbox: Sandbox, app_settings: Settings, redis_client: redis.Redis, shared: bool) -> None:
    limits = sandbox.github.limits
    processes = [github_gateway(app_settings, fleet=redis_client if shared else None) for _ in range(2)]
    cold = run_scan(processes[0], redis_client)
    assert len([item for item in cold.found if item.task_id]) == len(ACME + GLOBEX)
    free = []
    for turn in range(1, 5):
        if turn == 3:
            sandbox.add_issue(ACME[0], "one more")  # a change: that repository is read whole
        limits.reset_tally()
        result = run_scan(processes[turn % 2], redis_client)
        free.append(len(limits.not_modified))
        assert not result.failed
    # GitHub answers another token's ETag in full: the fleet's shared ETags pay only when its processes share one.
    assert free == ([10, 10, 9, 10] if shared else [0, 0, 0, 0])
    assert len(sandbox.github.apps.minted) == (2 if shared else 4)
