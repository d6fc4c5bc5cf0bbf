"""Growing delays after failed sign-ins, per account and per client address; no I/O, the caller's clock.

Why two keys, and why they act differently (an office of 20 operators behind one NAT address):

* **Account** (the username as typed, whether or not it exists): the first ``ACCOUNT_FREE`` failures
  cost nothing; each further one makes the next attempt wait ``1 s, 2 s, 4 s …`` (doubling, at most
  ``MAX_DELAY``) after the last failure. While an account waits, every attempt for it, the right
  password included, is refused before the password is checked (else the throttle would still
  answer guesses) and does not count. A successful sign-in clears the account.
* **Address**: a much higher allowance (``ADDRESS_FREE`` failures), since one address may be a whole
  office. Past it, the same doubling delays apply, but only to attempts that would fail or that
  name an account which has failed already: the password of an account with no failure on record
  is always checked, and a correct one signs in. So Anna mistyping her password ten times never
  keeps Boris out; a script trying one password on every account (password spraying) gets one
  guess per account from that address, then waits with the rest.

A key's failures are forgotten after ``FORGET_AFTER`` without a new failure. Counters live in
memory, per process, bounded (least recently failed keys are dropped first).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

ACCOUNT_FREE = 3  # failed passwords per account before the delays start
ADDRESS_FREE = 30  # failed passwords per client address before the delays start (a NAT office)
FIRST_DELAY = 1.0  # seconds; doubles with every further failure
MAX_DELAY = 900.0  # 15 minutes at most between two attempts
FORGET_AFTER = 3600.0  # a key with no failure for an hour starts again from zero
MAX_KEYS = 10_000  # per kind (accounts, addresses)


@dataclass
class _Failures:
    count: int
    last: float  # when the latest failure happened (seconds, the caller's clock)


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused and for how long: ``scope`` is "account" or "address"."""

    scope: str
    wait: float  # seconds

    @property
    def retry_after(self) -> int:
        """Whole seconds for the Retry-After header (never 0: the client must wait)."""
        return max(1, math.ceil(self.wait))


class _Counter:
    def __init__(self, free: int, first_delay: float, max_delay: float, forget_after: float, max_keys: int) -> None:
        self.free, self.first_delay, self.max_delay = free, first_delay, max_delay
        self.forget_after, self.max_keys = forget_after, max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def _current(self, key: str, now: float) -> _Failures | None:
        entry = self._keys.get(key)
        if entry is not None and now - entry.last >= self.forget_after:
            del self._keys[key]
            return None
        return entry

    def failures(self, key: str, now: float) -> int:
        entry = self._current(key, now)
        return 0 if entry is None else entry.count

    def wait(self, key: str, now: float) -> float:
        """Seconds until the next attempt for ``key`` may be checked; 0 when it may be now."""
        entry = self._current(key, now)
        if entry is None or entry.count < self.free:
            return 0.0
        delay = min(self.max_delay, self.first_delay * 2 ** min(entry.count - self.free, 64))
        return max(0.0, entry.last + delay - now)

    def fail(self, key: str, now: float) -> None:
        entry = self._current(key, now)
        if entry is None:
            entry = self._keys[key] = _Failures(0, now)
        entry.count += 1
        entry.last = now
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)


class LoginThrottle:
    """``before()`` the password check, ``after_failure()`` or ``succeeded()`` after it (see the module
    docstring for the rules). ``now`` is any monotonic-enough seconds value; tests pass their own."""

    def __init__(self, *, account_free: int = ACCOUNT_FREE, address_free: int = ADDRESS_FREE,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY,
                 forget_after: float = FORGET_AFTER, max_keys: int = MAX_KEYS) -> None:
        self.accounts = _Counter(account_free, first_delay, max_delay, forget_after, max_keys)
        self.addresses = _Counter(address_free, first_delay, max_delay, forget_after, max_keys)

    def before(self, account: str, address: str, now: float) -> Refusal | None:
        """A refusal without checking the password, or None: check it."""
        wait = self.accounts.wait(account, now)
        if wait > 0:
            return Refusal("account", wait)
        # An address over its allowance: accounts that failed already wait with it (spraying gets
        # one guess per account); an account with a clean record is checked (the office's others).
        wait = self.addresses.wait(address, now)
        if wait > 0 and self.accounts.failures(account, now) > 0:
            return Refusal("address", wait)
        return None

    def after_failure(self, account: str, address: str, now: float) -> Refusal | None:
        """Counts a wrong password; a refusal when the address was already waiting (the failing
        attempt is answered 429 with the address's new delay instead of 401), else None."""
        address_waited = self.addresses.wait(address, now) > 0
        self.accounts.fail(account, now)
        self.addresses.fail(address, now)
        if address_waited:
            return Refusal("address", self.addresses.wait(address, now))
        return None

    def next_wait(self, account: str, now: float) -> float:
        """Seconds the account must wait before its next attempt (after a failure: to tell the person)."""
        return self.accounts.wait(account, now)

    def succeeded(self, account: str) -> None:
        self.accounts.clear(account)
