"""Read the Asterisk config files of ``dialplans/`` as Asterisk does, for the tests that hold them to
Asterisk 22: sections, ``key = value`` / ``key => value`` lines, and dialplan priorities split
into application and arguments.

What Asterisk's parser (main/config.c, pbx_config.c) does that matters here: ``;`` starts a
comment unless escaped as ``\\;``; ``;-- … --;`` is a block comment; whitespace around keys and
values is dropped; ``same =>`` continues the previous ``exten``; arguments are separated by
commas outside ``()``, ``${…}``, ``$[…]`` and double quotes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"


@dataclass(frozen=True)
class Entry:
    file: str
    line: int
    section: str
    key: str
    value: str

    def where(self) -> str:
        return f"{self.file}:{self.line} [{self.section}] {self.key}"


@dataclass(frozen=True)
class Priority:
    """One dialplan step: ``exten => start,n(label),App(args)``."""

    file: str
    line: int
    context: str
    exten: str
    label: str | None
    app: str
    args: tuple[str, ...]

    def where(self) -> str:
        return f"{self.file}:{self.line} [{self.context}] {self.exten} {self.app}"


def strip_comment(line: str) -> str:
    out: list[str] = []
    escaped = False
    for char in line:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            out.append(char)
            escaped = True
        elif char == ";":
            break
        else:
            out.append(char)
    return "".join(out).replace("\\;", ";").strip()


def entries(path: Path) -> list[Entry]:
    """Every ``key = value`` / ``key => value`` of a config file, in order, with its section."""
    found: list[Entry] = []
    section = ""
    in_block = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if in_block:
            if "--;" in raw:
                in_block = False
                raw = raw.split("--;", 1)[1]
            else:
                continue
        if ";--" in raw:
            before, _, after = raw.partition(";--")
            if "--;" not in after:
                in_block = True
            raw = before + after.partition("--;")[2]
        line = strip_comment(raw)
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line[1 : line.index("]")]
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path.name}:{number}: not a key = value line: {line!r}")
        found.append(Entry(path.name, number, section, key.strip(), value.removeprefix(">").strip()))
    return found


def split_args(text: str) -> tuple[str, ...]:
    """Application arguments split on top-level commas (Asterisk's standard argument parsing)."""
    args: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        elif char == "," and depth == 0 and not quoted:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    args.append("".join(current).strip())
    return tuple(args)


_STEP = re.compile(r"^(?P<prio>[^,(]+)(?:\((?P<label>[^)]*)\))?,(?P<app>\w+)(?:\((?P<args>.*)\))?$")


def priorities(path: Path) -> list[Priority]:
    """Every ``exten =>`` / ``same =>`` step of an extensions file."""
    steps: list[Priority] = []
    exten = ""
    for entry in entries(path):
        if entry.key == "exten":
            exten, _, rest = entry.value.partition(",")
        elif entry.key == "same":
            rest = entry.value
        else:
            continue
        match = _STEP.match(rest.strip())
        if match is None:
            raise ValueError(f"{entry.where()}: not a priority: {rest!r}")
        args = split_args(match["args"]) if match["args"] is not None else ()
        steps.append(Priority(entry.file, entry.line, entry.section, exten.strip(), match["label"],
                              match["app"], args))
    return steps


def config_files(suffix: str = ".conf") -> list[Path]:
    return sorted(DIALPLANS.glob(f"*{suffix}"))
