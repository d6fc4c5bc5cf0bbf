"""The FastAGI wire grammar: how Asterisk splits a command line into arguments, and what it replies.

Arguments (used by our caller without Asterisk):
Whitespace separates, double quotes group (``""`` is an empty argument), a backslash escapes the next
character, single quotes are literal characters. This mirrors Asterisk's ``parse_args`` in res_agi.c.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivr.agi.errors import AgiProtocolError


def split_agi_args(line: str) -> list[str]:
    args: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    started = False  # an argument has begun (so that "" yields an empty argument)
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
            started = True
        elif char == "\\":
            escaped = True
            started = True
        elif char == '"':
            in_quotes = not in_quotes
            started = True
        elif char in " \t" and not in_quotes:
            if started:
                args.append("".join(current))
                current, started = [], False
        else:
            current.append(char)
            started = True
    if started:
        args.append("".join(current))
    return args


# --------------------------------------------------------------------------- replies
#
# What Asterisk answers, per command, from res/res_agi.c (handle_*) and its dispatcher
# (agi_handle_command): every command gets exactly one reply, ``510`` (unknown command), ``511`` (not
# on a dead channel), ``520`` (bad syntax; usually the multi-line usage block) or its own ``200``
# form below. A reply of another shape is not Asterisk talking to this command: the wire is out of
# step (a stray line, a hostile peer) and nothing on it can be taken as the caller's input.

_REPLY_RE = re.compile(r"(?P<code>200) result=(?P<result>\S*)(?: \((?P<data>.*)\))?(?: endpos=(?P<endpos>-?\d+))?")
_STATUS_RE = re.compile(r"(?P<code>51[01]|520) (?P<text>.+)")
_INT = r"-?\d+"
_FORMS: dict[str, re.Pattern[str]] = {
    "ANSWER": re.compile(rf"200 result=(?P<result>{_INT})"),  # handle_answer: 0, or -1
    "CHANNEL STATUS": re.compile(rf"200 result=(?P<result>{_INT})"),  # state number, -1 unknown channel
    "EXEC": re.compile(rf"200 result=(?P<result>{_INT})"),  # the application's return, -2 no such app
    "SET VARIABLE": re.compile(r"200 result=(?P<result>1)"),
    "VERBOSE": re.compile(r"200 result=(?P<result>1)"),
    "HANGUP": re.compile(r"200 result=(?P<result>-?1)"),
    # handle_getvariable(full): "result=1 (value)" or "result=0"; the value runs to the last ")".
    "GET VARIABLE": re.compile(r"200 result=(?:(?P<result>1) \((?P<data>.*)\)|(?P<unset>0))"),
    "GET FULL VARIABLE": re.compile(r"200 result=(?:(?P<result>1) \((?P<data>.*)\)|(?P<unset>0))"),
    # handle_streamfile: "result=<0 | -1 | escape digit's code> endpos=<sample>", always with endpos.
    "STREAM FILE": re.compile(rf"200 result=(?P<result>{_INT}) endpos=(?P<endpos>{_INT})"),
    # handle_getdata: "result=<keys>", "result=<keys> (timeout)", or "result=-1"; the "#" that ends
    # input is not among the keys.
    "GET DATA": re.compile(r"200 result=(?:(?P<result>[0-9*A-D]*)(?: \((?P<data>timeout)\))?|(?P<failed>-1))"),
}


@dataclass(frozen=True)
class AgiReply:
    code: int
    result: str
    data: str | None
    endpos: int | None
    raw: str

    @property
    def result_int(self) -> int | None:
        try:
            return int(self.result)
        except ValueError:
            return None


def parse_reply(line: str) -> AgiReply:
    """Parse one single-line reply of any command (``200 result=1 (value) endpos=0``, ``510 ...``)."""
    m = _REPLY_RE.fullmatch(line)
    if m:
        endpos = m.group("endpos")
        return AgiReply(200, m.group("result"), m.group("data"), int(endpos) if endpos is not None else None, line)
    m = _STATUS_RE.fullmatch(line)
    if m:
        return AgiReply(int(m.group("code")), "", m.group("text"), None, line)
    raise AgiProtocolError(f"unparseable AGI line: {line[:200]!r}")


def command_verb(line: str) -> str:
    """The command words of a built command line (``GET DATA "x" "1"`` -> ``GET DATA``)."""
    words = []
    for word in line.split(" "):
        if word.startswith('"'):
            break
        words.append(word.upper())
    return " ".join(words).strip()


def expect_reply(verb: str, args: tuple[str, ...], line: str) -> AgiReply:
    """``line`` checked as the reply to ``verb args``; AgiProtocolError when it cannot be one."""
    if not line.startswith("200 "):
        return parse_reply(line)  # 510/511/520 answer any command; anything else is unparseable
    form = _FORMS.get(verb)
    if form is None:
        return parse_reply(line)  # a command we send only by hand (tests, `ivr call`): the grammar
    m = form.fullmatch(line)
    if m is None:
        raise AgiProtocolError(f"not a {verb} reply: {line[:200]!r}")
    groups = m.groupdict()
    result = groups.get("unset") or groups.get("failed") or m.group("result")
    endpos = groups.get("endpos")
    reply = AgiReply(200, result, groups.get("data"), int(endpos) if endpos is not None else None, line)
    if verb == "STREAM FILE":
        code = int(result)
        escape = args[1] if len(args) > 1 else ""
        # ast_waitstream_full stops early only on one of the escape digits we sent.
        if code > 0 and not (code < 0x110000 and chr(code) in escape):
            raise AgiProtocolError(f"STREAM FILE stopped on a key it was not given: {line[:200]!r}")
        if code < -1:
            raise AgiProtocolError(f"not a STREAM FILE result: {line[:200]!r}")
    elif verb == "GET DATA" and result != "-1" and len(args) > 2 and args[2].isdigit() and len(result) > int(args[2]):
        raise AgiProtocolError(f"GET DATA returned more keys than asked for: {line[:200]!r}")
    return reply
