"""The claim lease: one Redis key per issue, SET NX with a TTL and a random token, renewed while held."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from types import TracebackType

import redis

from asm.errors import AlreadyClaimed, ClaimLost
from asm.keys import IssueRef

log = logging.getLogger(__name__)
# The lease counts as ours only for this fraction of the TTL after a renewal began: the rest is the
# margin for clocks, and for what a caller does between check() and its next step.
SAFE_FRACTION = 0.8

# Renew only if the key still holds our token. A key that vanished (Redis restarted without
# persistence) is taken back with NX, so a restart alone does not cost a running workflow its issue.
_RENEW = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
elseif not current then
  if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Claim:
    """A lease on one issue, held by one worker; use as a context manager."""

    def __init__(self, client: redis.Redis[bytes], issue: IssueRef, ttl: float, holder: str) -> None:
        self.client = client
        self.issue = issue
        self.ttl_ms = max(int(ttl * 1000), 3000)
        self.token = f"{holder}:{secrets.token_hex(8)}"
        self.lost = threading.Event()
        self.renewed_at = time.monotonic()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lease if nobody holds it."""
        return bool(self.client.set(self.issue.claim_key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        """Extend the lease; False when someone else holds it now."""
        return bool(self._renew(keys=[self.issue.claim_key], args=[self.token, self.ttl_ms]))

    def release(self) -> bool:
        """Delete the lease, only if it is still ours."""
        return bool(self._release(keys=[self.issue.claim_key], args=[self.token]))

    def holder(self) -> str | None:
        """Who holds the lease now (its token), if anyone."""
        value = self.client.get(self.issue.claim_key)
        return value.decode() if isinstance(value, bytes) else value

    def check(self) -> None:
        """Raise ClaimLost unless the lease is surely still ours; call before anything irreversible.

        Surely: renewed less than the TTL ago, minus a margin for the time this check takes to act
        on. A renewal stuck on a slow Redis, or a process that was paused, fails this by itself.
        """
        if self.lost.is_set():
            raise ClaimLost(f"the claim on {self.issue} was lost")
        if time.monotonic() - self.renewed_at > self.ttl_ms / 1000 * SAFE_FRACTION:
            raise ClaimLost(f"the claim on {self.issue} was not renewed in time")

    def __enter__(self) -> Claim:
        self.renewed_at = time.monotonic()
        if not self.acquire():
            raise AlreadyClaimed(f"{self.issue} is claimed by {self.holder() or 'another worker'}")
        self._renewer = threading.Thread(target=self._keep_alive, name=f"claim {self.issue}", daemon=True)
        self._renewer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        try:
            self.release()
        except redis.RedisError as problem:
            # The key expires by itself within the TTL; nothing else to do.
            log.warning("could not release the claim on %s: %s", self.issue, problem)

    def _keep_alive(self) -> None:
        """Renew every third of the TTL; a lease not renewed within the TTL counts as lost."""
        interval = self.ttl_ms / 3000
        last_renewed = time.monotonic()
        while not self._stop.wait(interval):
            try:
                started = time.monotonic()
                if not self.renew():
                    log.error("claim on %s was taken over", self.issue)
                    self.lost.set()
                    return
                last_renewed = self.renewed_at = started
            except redis.RedisError as problem:
                log.warning("could not renew the claim on %s: %s", self.issue, problem)
                if time.monotonic() - last_renewed > self.ttl_ms / 1000:
                    self.lost.set()
                    return
