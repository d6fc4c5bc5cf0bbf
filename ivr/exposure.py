"""`ivr serve` refuses to listen beyond loopback while a shipped secret is still in use.

Beyond loopback means ``web.host`` (with the web console on) or ``agi.host`` is not a loopback
address: "0.0.0.0", "::", "", a LAN address or any host name but "localhost". The shipped secrets
are the API's bearer token ``change-me`` (ivr/defaults.toml) and the demo accounts' password
(``crm_bridge.demo.DEMO_PASSWORD``, on an active demo account). On loopback they stay allowed: that
is the laptop demo (`make run`, `ivr serve --demo`).
"""

from __future__ import annotations

import ipaddress

from ivr.settings import Settings, default_settings


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a host name (or "" = every interface): assume it is reachable from outside


def exposed_listeners(settings: Settings) -> list[str]:
    """The listeners reachable beyond this host, as "setting = value" for the message."""
    exposed = []
    if settings.web.enabled and not is_loopback(settings.web.host):
        exposed.append(f"web.host = {settings.web.host!r}")
    if not is_loopback(settings.agi.host):
        exposed.append(f"agi.host = {settings.agi.host!r}")
    return exposed


def default_token(settings: Settings) -> bool:
    return settings.web.api_token == default_settings().web.api_token


def refusal(settings: Settings, demo_accounts: list[str]) -> str | None:
    """The one line `ivr serve` prints before exiting, or None when it may start.
    ``demo_accounts``: active demo accounts still on the demo password."""
    exposed = exposed_listeners(settings)
    if not exposed:
        return None
    fixes = []
    if default_token(settings):
        fixes.append("set web.api_token (IVR_WEB__API_TOKEN) to a long random value, not "
                     f"{settings.web.api_token!r}")
    if demo_accounts:
        fixes.append("change the demo password of " + ", ".join(demo_accounts)
                     + " (ivr users passwd NAME) or deactivate them")
    if not fixes:
        return None
    return (f"ivr serve: refusing to listen beyond loopback ({', '.join(exposed)}) with default secrets: "
            + "; ".join(fixes) + " (or listen on 127.0.0.1)")
