"""As a GitHub App, each installation has its own rate limit: one spent down to its reserve leaves the scan of the
others' repositories as it was."""

from __future__ import annotations

from pathlib import Path

import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from asm.deps import github_gateway
from asm.fleet.scan import scan
from asm.sandbox.fleet import Sandbox, point_process_at

APP_ID = 4711


class Kept:
    """A Celery app's `send_task`, kept."""

    def __init__(self) -> None:
        self.sent: list[list[object]] = []

    def send_task(self, name: str, args: list[object], task_id: str, countdown: float | None,
                  priority: int | None = None) -> None:
        self.sent.append(args)


def test_one_installation_at_its_reserve_leaves_the_others_scanned(sandbox: Sandbox, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "app.pem"
    pem.write_text(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode())
    apps = sandbox.github.apps
    apps.create_app("asm-helper", key.public_key(), app_id=APP_ID)
    for name in ("acme/a", "globex/b"):
        sandbox.create_repo(name)
    acme = apps.install(APP_ID, "acme", ["acme/a"])
    apps.install(APP_ID, "globex", ["globex/b"])
    settings = point_process_at(sandbox, GITHUB_TOKEN="", ASM_GITHUB_APP_ID=str(APP_ID),
                                ASM_GITHUB_APP_PRIVATE_KEY_PATH=str(pem), ASM_REPOS="")
    client, kept = redis.Redis.from_url(sandbox.redis_url), Kept()
    github = github_gateway(settings)
    scan(github, client, kept, (), settings.ready_label, 3600)  # both installations' budgets are seen
    sandbox.github.limits.set_used(f"asm-helper[bot]#{acme}", 4_600)  # acme's: 400 left, under the reserve
    scan(github, client, kept, (), settings.ready_label, 3600)  # acme's low budget is seen

    number = sandbox.add_issue("globex/b", "globex's ready issue", "Please.")
    result = scan(github, client, kept, (), settings.ready_label, 3600)

    assert "acme/a" in result.skipped and "globex/b" not in result.skipped
    assert [str(found.issue) for found in result.found if found.task_id] == [f"globex/b#{number}"]
