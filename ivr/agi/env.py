"""The FastAGI env block: ``agi_key: value`` lines ending with one empty line.

Values are UTF-8 as a rule, but Asterisk passes the caller name (and whatever the dialplan puts in
the arguments) as the bytes the SIP peer sent: Latin-1 and cp1251 names exist in the wild. Such a
value is decoded leniently (``decode_value``) and kept in ``AgiEnv.undecoded`` with its raw bytes,
so the server logs them once and serves the call; only the keys and the block's structure are strict.

Bounds: the block is read against one deadline (``agi.env_timeout``) for the whole of it, so a peer
trickling a byte at a time is cut like one sending nothing; and it may hold at most ``MAX_ENV_BYTES``.
A real block is ~0.6 KB (608-656 bytes, 25 lines, in the 13 sessions of
``tests/data/asterisk-traces/agi``); 32 KiB leaves room for fifty times that (long dialplan
arguments: res_agi passes at most 127 of them), while an unauthenticated connection can no longer
make us hold 256 lines of 8 KiB (2 MB) each.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote, urlsplit

from crm_bridge.phones import caller_number
from ivr.agi.errors import AgiEnvError

MAX_ENV_LINE = 8192
MAX_ENV_LINES = 256
MAX_ENV_BYTES = 32 * 1024  # the whole block, terminators included: see the module docstring

_KEY_RE = re.compile(r"agi_[A-Za-z0-9_]+")
_ARG_RE = re.compile(r"arg_(\d+)")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_UNKNOWN = {"", "unknown"}  # a caller *name* Asterisk does not know
# The bytes of cp1251's Cyrillic letters: А-я (0xC0-0xFF) and Ёё Єє Її Ііі Ўў Ґґ.
_CP1251_LETTERS = frozenset(range(0xC0, 0x100)) | frozenset(b"\xa8\xb8\xaa\xba\xaf\xbf\xb2\xb3\xa1\xa2\xa5\xb4")
_WORD_RE = re.compile(rb"[A-Za-z\x80-\xff]+")


def decode_value(raw: bytes) -> tuple[str, str]:
    """``(text, encoding)``: UTF-8 when it is; cp1251 when a word is made only of cp1251 Cyrillic
    letters (Latin-1 names carry an accented letter among plain ones: "Müller", "Conceição");
    else Latin-1, which decodes any byte. Never fails."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if any(len(word) >= 2 and all(b in _CP1251_LETTERS for b in word) for word in _WORD_RE.findall(raw)):
        try:
            return raw.decode("cp1251"), "cp1251"
        except UnicodeDecodeError:  # 0x98 is no cp1251 character: not cp1251 after all
            pass
    return raw.decode("latin-1"), "latin-1"


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class AgiEnv:
    raw: Mapping[str, str]
    script: str
    options: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    args: tuple[str, ...] = ()
    # Values that were not UTF-8 (key without ``agi_`` -> the bytes as sent), decoded by decode_value.
    undecoded: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_raw(cls, raw: Mapping[str, str], undecoded: Mapping[str, bytes] | None = None) -> AgiEnv:
        """Build from the env keys without their ``agi_`` prefix."""
        target = raw.get("network_script", "")
        if not target and raw.get("request"):
            parts = urlsplit(raw["request"])
            target = parts.path + ("?" + parts.query if parts.query else "")
        path, _, query = target.partition("?")
        query = query.partition("#")[0]
        script = unquote(path, errors="replace").strip("/")
        options: dict[str, str] = {}
        try:
            for key, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
                if key:
                    options[key] = value
        except ValueError:  # pragma: no cover - parse_qsl is lenient unless strict_parsing
            options = {}
        numbered = sorted(
            (int(m.group(1)), value) for key, value in raw.items() if (m := _ARG_RE.fullmatch(key))
        )
        return cls(
            raw=_frozen(raw),
            script=script,
            options=_frozen(options),
            args=tuple(value for _, value in numbered),
            undecoded=MappingProxyType(dict(undecoded or {})),
        )

    def get(self, key: str, default: str = "") -> str:
        return self.raw.get(key, default)

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def caller_id(self) -> str | None:
        """The caller's number as Asterisk gave it; None when withheld (``crm_bridge.phones``'s
        one definition of "no number")."""
        return caller_number(self.get("callerid"))

    @property
    def caller_name(self) -> str | None:
        value = self.get("calleridname")
        return None if value.strip().lower() in _UNKNOWN else value

    @property
    def language(self) -> str:
        return self.get("language")

    @property
    def context(self) -> str:
        return self.get("context")

    @property
    def extension(self) -> str:
        return self.get("extension")


def parse_env_line(line: bytes) -> tuple[str, str, str]:
    """Parse one env line (terminator already removed) into (key without ``agi_``, value, the
    value's encoding: ``utf-8``, or what ``decode_value`` fell back to)."""
    if len(line) > MAX_ENV_LINE:
        raise AgiEnvError(f"env line too long ({len(line)} bytes)")
    raw_key, sep, raw_value = line.partition(b":")
    key = raw_key.decode("latin-1")
    if not sep or not _KEY_RE.fullmatch(key):
        raise AgiEnvError(f"not an agi_ env line: {line[:60]!r}")
    value, encoding = decode_value(raw_value[1:] if raw_value.startswith(b" ") else raw_value)
    if _CONTROL_RE.search(value):
        raise AgiEnvError("control characters in env line")
    return key[4:], value, encoding


async def read_env(
    reader: asyncio.StreamReader,
    timeout: float,  # noqa: ASYNC109 - one overall deadline, part of the API
    *,
    max_line: int = MAX_ENV_LINE,
    max_lines: int = MAX_ENV_LINES,
    max_bytes: int = MAX_ENV_BYTES,
) -> AgiEnv:
    """Read the env block with ONE overall deadline; raise AgiEnvError on anything but a clean block.

    Nothing is kept of a refused block: what was parsed goes with the exception, and the bytes still
    buffered go with the connection the server closes.
    """
    raw: dict[str, str] = {}
    undecoded: dict[str, bytes] = {}
    size = 0
    try:
        async with asyncio.timeout(timeout):
            for _ in range(max_lines + 1):
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    raise AgiEnvError(
                        f"connection closed before the end of the env block "
                        f"({len(raw)} keys, {len(exc.partial)} bytes pending)"
                    ) from None
                except asyncio.LimitOverrunError:
                    raise AgiEnvError("env line too long") from None
                except (ConnectionError, OSError) as exc:
                    raise AgiEnvError(f"connection error while reading env: {exc!r}") from None
                if len(line) > max_line + 2:
                    raise AgiEnvError(f"env line too long ({len(line)} bytes)")
                size += len(line)
                if size > max_bytes:
                    raise AgiEnvError(f"env block longer than {max_bytes} bytes ({len(raw)} keys read)")
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if not line:
                    if not raw:
                        raise AgiEnvError("empty env block")
                    return AgiEnv.from_raw(raw, undecoded)
                key, value, encoding = parse_env_line(line)
                raw[key] = value
                if encoding != "utf-8":
                    undecoded[key] = line.partition(b":")[2].removeprefix(b" ")
            raise AgiEnvError(f"env block longer than {max_lines} lines")
    except TimeoutError:
        raise AgiEnvError(f"env block not finished within {timeout:g}s ({len(raw)} keys)") from None
