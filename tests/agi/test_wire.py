from __future__ import annotations

import pytest

from ivr.agi.channel import build_command, quote_arg
from ivr.agi.errors import AgiProtocolError
from ivr.agi.wire import AgiReply, parse_reply
from tests.fakeasterisk import parse_agi_args, split_command, usage_520

pytestmark = pytest.mark.timeout(10)

TRICKY = ['he said "hi" \\o/ ok', "a (b) c)", "Иван Петров", "", "hello world", "back\\slash\\", "'beep'", "\t x "]


def test_quote_matches_the_trace_bytes():
    assert build_command("SET VARIABLE", "IVR_NOTE", 'he said "hi" \\o/ ok') == (
        'SET VARIABLE "IVR_NOTE" "he said \\"hi\\" \\\\o/ ok"\n'
    )
    assert quote_arg("") == '""'
    assert quote_arg("a (b) c)") == '"a (b) c)"'


@pytest.mark.parametrize("value", TRICKY)
def test_quoting_round_trips_through_asterisk_parser(value):
    line = build_command("SET VARIABLE", "IVR_X", value).rstrip("\n")
    assert parse_agi_args(line) == ["SET", "VARIABLE", "IVR_X", value]


def test_asterisk_parser_on_the_trace_lines():
    assert parse_agi_args('SET VARIABLE IVR_NOTE "he said \\"hi\\" \\\\o/ ok"') == [
        "SET", "VARIABLE", "IVR_NOTE", 'he said "hi" \\o/ ok',
    ]  # fmt: skip
    assert parse_agi_args("SET VARIABLE IVR_TWO_WORDS hello world")[2:] == ["IVR_TWO_WORDS", "hello", "world"]
    assert parse_agi_args("SET VARIABLE IVR_ESCAPED hello\\ world")[2:] == ["IVR_ESCAPED", "hello world"]
    assert parse_agi_args('SET VARIABLE IVR_EMPTY ""')[2:] == ["IVR_EMPTY", ""]
    assert parse_agi_args("STREAM FILE 'beep' \"\"")[2:] == ["'beep'", ""]
    assert parse_agi_args("STREAM FILE /x/greeting two \"12\"")[2:] == ["/x/greeting", "two", "12"]
    assert parse_agi_args('EXEC Set "IVR_EXEC=a b c"')[1:] == ["Set", "IVR_EXEC=a b c"]
    assert split_command('get full variable "${X}"') == ("GET FULL VARIABLE", ("${X}",), True)
    assert split_command("FOO BAR") == ("FOO", ("BAR",), False)


@pytest.mark.parametrize("bad", ["a\nHANGUP", "a\rb", "nul\x00"])
def test_newline_in_argument_is_rejected(bad):
    with pytest.raises(ValueError):
        quote_arg(bad)


@pytest.mark.parametrize("bad", ["ANSWER\nHANGUP", "", 'SET "X"'])
def test_bad_command_words_are_rejected(bad):
    with pytest.raises(ValueError):
        build_command(bad)


def test_unquoted_command_words_and_numbers_as_args():
    assert build_command("GET DATA", "beep", "1500", "2") == 'GET DATA "beep" "1500" "2"\n'
    assert build_command("ANSWER") == "ANSWER\n"
    assert build_command("  channel   status ") == "channel status\n"


@pytest.mark.parametrize(
    "line, code, result, data, endpos",
    [
        ("200 result=0", 200, "0", None, None),
        ("200 result=1 (+79161234567)", 200, "1", "+79161234567", None),
        ("200 result=1 (Ivan Petrov <+79161234567> on Local/start@ivr-inbound-00000000;2)", 200, "1",
         "Ivan Petrov <+79161234567> on Local/start@ivr-inbound-00000000;2", None),
        ("200 result=1 (he said \"hi\" \\o/ ok)", 200, "1", 'he said "hi" \\o/ ok', None),
        ("200 result=1 (a (b) c))", 200, "1", "a (b) c)", None),
        ("200 result=1 (Иван Петров)", 200, "1", "Иван Петров", None),
        ("200 result=1 ()", 200, "1", "", None),
        ("200 result=6", 200, "6", None, None),
        ("200 result=49 endpos=10880", 200, "49", None, 10880),
        ("200 result=0 endpos=11234", 200, "0", None, 11234),
        ("200 result=-1 endpos=0", 200, "-1", None, 0),
        ("200 result=-1 endpos=8160", 200, "-1", None, 8160),
        ("200 result=-1", 200, "-1", None, None),
        ("200 result=4711", 200, "4711", None, None),
        ("200 result=12", 200, "12", None, None),
        ("200 result= (timeout)", 200, "", "timeout", None),
        ("200 result=9 (timeout)", 200, "9", "timeout", None),
        ("200 result=-2", 200, "-2", None, None),
        ("200 result=0 (timeout) endpos=0", 200, "0", "timeout", 0),
        ("200 result=35 (dtmf) endpos=0", 200, "35", "dtmf", 0),
        ("200 result=0 endpos=3404", 200, "0", None, 3404),
        ("200 result=1 (/var/spool/asterisk/monitor/agi-1795750923_1.wav)", 200, "1",
         "/var/spool/asterisk/monitor/agi-1795750923_1.wav", None),
        ("510 Invalid or unknown command", 510, "", "Invalid or unknown command", None),
        ("511 Command Not Permitted on a dead channel or intercept routine", 511, "",
         "Command Not Permitted on a dead channel or intercept routine", None),
    ],
)
def test_every_reply_shape_of_the_traces(line, code, result, data, endpos):
    reply = parse_reply(line)
    assert (reply.code, reply.result, reply.data, reply.endpos, reply.raw) == (code, result, data, endpos, line)


def test_result_int():
    assert parse_reply("200 result=49 endpos=1").result_int == 49
    assert parse_reply("200 result= (timeout)").result_int is None
    assert isinstance(parse_reply("200 result=0"), AgiReply)


@pytest.mark.parametrize("line", ["hello", "20 result=1", "\x00\x01", "OK"])
def test_unparseable_lines(line):
    with pytest.raises(AgiProtocolError):
        parse_reply(line)


def test_usage_text_is_the_traces():
    text = usage_520("SET VARIABLE")
    assert text == (
        "520-Invalid command syntax.  Proper usage follows:\n"
        "Sets a variable to the current channel.\n"
        "520 End of proper usage."
    )
    assert len(usage_520("STREAM FILE").split("\n")) == 7
