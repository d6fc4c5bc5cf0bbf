from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ivr.agi.env import MAX_ENV_BYTES, MAX_ENV_LINE, AgiEnv, decode_value, read_env
from ivr.agi.errors import AgiEnvError
from tests.traces import TRACES as CAPTURED_TRACES

pytestmark = pytest.mark.timeout(10)

TRACE = CAPTURED_TRACES / "agi" / "full.txt"

# Copy of the env block of full.txt (Asterisk 22.10.1), exact bytes.
FULL_ENV = (
    b"agi_network: yes\n"
    b"agi_network_script: ivr?scenario=full&lang=ru&x=a%20b\n"
    b"agi_request: agi://127.0.0.1:4573/ivr?scenario=full&lang=ru&x=a%20b\n"
    b"agi_channel: Local/start@ivr-inbound-00000000;2\n"
    b"agi_language: en\n"
    b"agi_type: Local\n"
    b"agi_uniqueid: 1795750923.1\n"
    b"agi_version: 22.10.1\n"
    b"agi_callerid: +79161234567\n"
    b"agi_calleridname: Ivan Petrov\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: unknown\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: ivr-inbound\n"
    b"agi_extension: start\n"
    b"agi_priority: 8\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 139909302281920\n"
    b"agi_arg_1: first arg\n"
    b"agi_arg_2: second quoted\n"
    b"agi_arg_3: third,with,commas\n"
    b"\n"
)


def trace_env_block(path: Path) -> bytes:
    """The env block of a transcript, rebuilt from its ``AST> agi_...\\n`` lines."""
    out = b""
    for line in path.read_text(encoding="utf-8").splitlines():
        if "AST> " not in line:
            continue
        payload = line.split("AST> ", 1)[1]
        if payload == "\\n":
            return out + b"\n"
        if payload.startswith("agi_"):
            out += payload.removesuffix("\\n").encode() + b"\n"
    raise AssertionError("no env block")


def reader_with(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


def test_copy_matches_the_transcript():
    assert trace_env_block(TRACE) == FULL_ENV


async def test_full_trace_env_is_parsed():
    env = await read_env(reader_with(FULL_ENV), timeout=1)
    assert env.script == "ivr"
    assert dict(env.options) == {"scenario": "full", "lang": "ru", "x": "a b"}
    assert env.args == ("first arg", "second quoted", "third,with,commas")
    assert env.channel == "Local/start@ivr-inbound-00000000;2"
    assert env.uniqueid == "1795750923.1"
    assert env.caller_id == "+79161234567"
    assert env.caller_name == "Ivan Petrov"
    assert env.language == "en"
    assert env.context == "ivr-inbound"
    assert env.extension == "start"
    assert env.raw["accountcode"] == ""
    assert env.raw["dnid"] == "unknown"
    assert "agi_network" not in env.raw and env.raw["network"] == "yes"


async def test_env_block_stops_at_blank_line_and_leaves_the_rest():
    reader = reader_with(FULL_ENV + b"200 result=0\n")
    await read_env(reader, timeout=1)
    assert await reader.readline() == b"200 result=0\n"


@pytest.mark.parametrize(
    "script, name, options",
    [
        ("ivr?scenario=hangup_getdata&", "ivr", {"scenario": "hangup_getdata"}),
        ("repeat-order", "repeat-order", {}),
        ("/repeat-order/?lang=en", "repeat-order", {"lang": "en"}),
        ("repeat-order?lang=en&&=x&junk&bad=%ZZ&u=%D0%98%D0%B2", "repeat-order",
         {"lang": "en", "junk": "", "bad": "%ZZ", "u": "Ив"}),
        ("ivr?scenario=menu_operator_senddtmf&mix=1", "ivr", {"scenario": "menu_operator_senddtmf", "mix": "1"}),
    ],
)
def test_script_and_options(script, name, options):
    env = AgiEnv.from_raw({"network_script": script})
    assert env.script == name
    assert dict(env.options) == options


async def test_crlf_colons_and_utf8_values():
    data = (
        "agi_network_script: repeat-order\r\n"
        "agi_calleridname: Иван Петров\r\n"
        "agi_arg_2: b: c\r\n"
        "agi_arg_1: a:b: c\r\n"
        "agi_callerid: unknown\r\n"
        "\r\n"
    ).encode()
    env = await read_env(reader_with(data), timeout=1)
    assert env.caller_name == "Иван Петров"
    assert env.args == ("a:b: c", "b: c")
    assert env.caller_id is None


async def test_empty_caller_id_is_none():
    env = await read_env(reader_with(b"agi_network_script: x\nagi_callerid: \n\n"), timeout=1)
    assert env.caller_id is None


@pytest.mark.parametrize(
    "data",
    [
        FULL_ENV[:200],  # EOF before the blank line
        b"",  # connect and close
        b"\n",  # empty env
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not agi_
        b"agi_network: yes\n\x00\xff\xfe\x01binary\n\n",  # binary junk
        b"agi_network: yes\nagi_x: a\x00b\n\n",  # control char
        b"agi_network: " + b"y" * 10000 + b"\n\n",  # overlong line
        b"".join(b"agi_k%d: v\n" % i for i in range(300)) + b"\n",  # too many lines
    ],
)
async def test_garbage_is_rejected(data):
    with pytest.raises(AgiEnvError):
        await read_env(reader_with(data), timeout=1)


async def test_one_overall_deadline_even_when_lines_keep_trickling():
    reader = asyncio.StreamReader()

    async def trickle():
        for i in range(100):
            reader.feed_data(b"agi_k%d: v\n" % i)
            await asyncio.sleep(0.02)

    feeder = asyncio.create_task(trickle())
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(AgiEnvError, match="not finished"):
        await read_env(reader, timeout=0.2)
    assert loop.time() - start < 0.5
    feeder.cancel()



def test_every_captured_env_block_is_far_below_the_bound():
    sizes = [len(trace_env_block(path)) for path in sorted((CAPTURED_TRACES / "agi").glob("*.txt"))
             if "agi_network:" in path.read_text(encoding="utf-8")]
    assert sizes and max(sizes) < 1024 < MAX_ENV_BYTES // 30


async def test_long_dialplan_arguments_within_the_bound_are_read():
    args = b"".join(b"agi_arg_%d: %s\n" % (i, b"a" * 200) for i in range(1, 128))  # res_agi's 127 arguments
    env = await read_env(reader_with(FULL_ENV[:-1] + args + b"\n"), timeout=1)
    assert len(env.args) == 127 and env.args[-1] == "a" * 200


async def test_a_block_of_lines_each_within_the_line_limit_but_over_the_block_bound_is_refused():
    line = b"agi_arg_1: " + b"x" * (MAX_ENV_LINE - 20) + b"\n"
    lines = MAX_ENV_BYTES // len(line) + 1
    with pytest.raises(AgiEnvError, match=f"longer than {MAX_ENV_BYTES} bytes"):
        await read_env(reader_with(line * lines + b"\n"), timeout=1)

# Caller names as SIP peers send them (issue 9, point 6): Asterisk hands AGI the bytes untouched.
NAMES = [
    ("Иван Петров".encode(), "Иван Петров", None),
    ("Иван Петров".encode("cp1251"), "Иван Петров", "cp1251"),
    ("Ёлкина Юлия".encode("cp1251"), "Ёлкина Юлия", "cp1251"),
    ("Ivan Петров".encode("cp1251"), "Ivan Петров", "cp1251"),
    ("Олесь Гнатюк-Її".encode("cp1251"), "Олесь Гнатюк-Її", "cp1251"),
    ("José Müller".encode("latin-1"), "José Müller", "latin-1"),
    ("Conceição Lobão".encode("latin-1"), "Conceição Lobão", "latin-1"),  # "çã": two, among plain letters
    ("Ørsted Ågård".encode("latin-1"), "Ørsted Ågård", "latin-1"),
    (b"\xe0\x98 odd", "\xe0\x98 odd", "latin-1"),  # cp1251 has no 0x98: not cp1251 after all
]


@pytest.mark.parametrize("raw, name, fallback", NAMES)
async def test_a_caller_name_in_any_charset_is_decoded_and_its_bytes_kept(raw, name, fallback):
    data = b"agi_network_script: repeat-order\nagi_calleridname: " + raw + b"\nagi_callerid: +79161234567\n\n"
    env = await read_env(reader_with(data), timeout=1)
    assert env.caller_name == name
    assert env.caller_id == "+79161234567"
    assert dict(env.undecoded) == ({} if fallback is None else {"calleridname": raw})
    assert decode_value(raw) == (name, fallback or "utf-8")
