"""FastAGI wire layer: env block, channel (commands/replies/hang-up), server."""

from ivr.agi.channel import AgiChannel, GetDataResult, quote_arg
from ivr.agi.env import AgiEnv, read_env
from ivr.agi.errors import (
    AgiCommandError,
    AgiConnectionLost,
    AgiEnvError,
    AgiError,
    AgiHangup,
    AgiPlaybackFailed,
    AgiProtocolError,
    AgiTimeout,
)
from ivr.agi.server import FastAgiServer, Handler
from ivr.agi.wire import AgiReply, parse_reply

__all__ = [
    "AgiChannel",
    "AgiCommandError",
    "AgiConnectionLost",
    "AgiEnv",
    "AgiEnvError",
    "AgiError",
    "AgiHangup",
    "AgiPlaybackFailed",
    "AgiProtocolError",
    "AgiReply",
    "AgiTimeout",
    "FastAgiServer",
    "GetDataResult",
    "Handler",
    "parse_reply",
    "quote_arg",
    "read_env",
]
