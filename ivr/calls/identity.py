"""Who is calling and which call this is: settled once per AGI session, then passed down.

Every script on a channel (the repeat order, the queue's callback key) needs the same facts: the
call's id (Asterisk's ``linkedid``, shared by every channel of the call and by the AMI tracker),
the caller's number as Asterisk gave it and in E.164, the language to speak, and the idempotency key
its writes are filed under. They are computed here, once, so that no runner normalizes a number or
spells a key on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from crm_bridge.phones import normalize_phone
from ivr.agi.env import AgiEnv

# Orders placed by the robot are keyed by the call: a retried or replayed write finds the same order.
ORDER_KEY_PREFIX = "ivr:"


@dataclass(frozen=True)
class CallIdentity:
    call_id: str  # the Asterisk linkedid (the channel's uniqueid when it could not be read)
    uniqueid: str  # this channel's own id
    caller_id: str | None  # as Asterisk gave it; None when withheld
    channel: str
    script: str
    language: str  # the language to start in
    language_fixed: bool  # the line chose it (``?lang=``): a customer's own language does not override it
    customer_id: str | None = None  # known before the script started (left on the channel by the robot)

    @classmethod
    def of(
        cls, env: AgiEnv, call_id: str, *, default_language: str, language: str | None = None,
        customer_id: str | None = None,
    ) -> CallIdentity:
        """``language``: what the channel already said (IVR_LANGUAGE), used when the line sets none."""
        line_language = env.options.get("lang")
        return cls(
            call_id=call_id,
            uniqueid=env.uniqueid,
            caller_id=env.caller_id,
            channel=env.channel,
            script=env.script,
            language=line_language or language or default_language,
            language_fixed="lang" in env.options,
            customer_id=customer_id,
        )

    @cached_property
    def number(self) -> str | None:
        """The caller's E.164 number; None: nobody to look up or to call back.

        Computed on first use, once: the repeat order first needs it in the call-row write that runs
        beside the greeting, so parsing the number never delays the caller's first prompt.
        """
        return normalize_phone(self.caller_id)

    @property
    def order_key(self) -> str:
        """The idempotency key of the order this call places."""
        return ORDER_KEY_PREFIX + self.call_id
