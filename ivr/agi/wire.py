"""How Asterisk splits an AGI command line into arguments (used by our caller without Asterisk).

Whitespace separates, double quotes group (``""`` is an empty argument), a backslash escapes the next
character, single quotes are literal characters. This mirrors Asterisk's ``parse_args`` in res_agi.c.
"""

from __future__ import annotations


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
