"""AMI events of the captured transcripts as plain dicts, in wire order (what the AMI client hands on).

A transcript line looks like ``[+   0.003] S> Channel: Local/start@ivr-inbound-0000000f;1\\r\\n``;
an empty ``S>`` line ends a message. Only Asterisk's side (``S>``) is read, and only messages with
an ``Event`` header are returned (responses to our actions are the client's business).
"""

from __future__ import annotations

import re
from functools import cache

from tests.traces import TRACES as CAPTURED_TRACES

TRACES = CAPTURED_TRACES / "ami"
_LINE = re.compile(r"^\[\+\s*[\d.]+\] S> (?P<body>.*?)(?:\\r\\n)?$")


def parse_trace(text: str) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in text.splitlines():
        match = _LINE.match(raw)
        if match is None:
            continue
        body = match.group("body")
        if body == "":
            if current:
                messages.append(current)
            current = {}
            continue
        key, sep, value = body.partition(":")
        if not sep:
            continue
        current.setdefault(key.strip(), value[1:] if value.startswith(" ") else value)
    if current:
        messages.append(current)
    return messages


@cache
def _load(name: str) -> tuple[dict[str, str], ...]:
    text = (TRACES / f"{name}.txt").read_text(encoding="utf-8")
    return tuple(m for m in parse_trace(text) if "Event" in m)


def events(name: str) -> list[dict[str, str]]:
    """Fresh copies of the AMI events of ``ami/<name>.txt`` (callers may mutate them)."""
    return [dict(m) for m in _load(name)]


def first(name: str, event: str, **match: str) -> dict[str, str]:
    """The first ``event`` message of a trace whose headers include ``match``."""
    for message in events(name):
        if message.get("Event") == event and all(message.get(k) == v for k, v in match.items()):
            return message
    raise LookupError(f"{event} {match} not in {name}")


# Linkedids of the calls in the traces used by the tests.
CALL_IDS = {
    "menu_operator_senddtmf": "1795751090.30",
    "sipp_menu_operator": "1795751112.36",
    "queue_abandon": "1795751049.18",
    "hangup_getdata": "1795750985.4",
    "hangup_queue": "1795751023.10",
    "full": "1795750923.0",
    "queue_continue": "1795751034.14",
    "menu_repeat_order_senddtmf": "1795751100.34",
    "sipp_hangup_getdata": "1795751123.38",
    "hangup_idle": "1795751005.6",
    "hangup_stream": "1795751014.8",
}
