"""`ivr call`: a caller without Asterisk.

Connects to the running FastAGI server and plays Asterisk's part byte for byte (env block, one reply
per command, ``HANGUP`` lines), so a newcomer can watch a whole call in the terminal: each prompt's
text, the keys "pressed" and the result handed back to the dialplan.

A question asked over AudioSocket (the line speaks: ``EXEC AudioSocket <uuid>,<host>:<port>``) is
answered as Asterisk's AudioSocket() does it (ivr/audiosocket/caller.py): the caller waits for the
end of the prompt, then says the next ``--say`` phrase (espeak-ng, 8 kHz through soxr) or the next
``--say-wav`` file, or presses the next ``--keys`` answer as DTMF frames.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from crm_bridge.contract.dialplan import VARIABLES, IvrResult, Var
from ivr.agi.wire import split_agi_args
from ivr.audiosocket.caller import CallerTurn, audiosocket_leg, speech_pcm, wav_file_pcm

# What Asterisk answers to commands a FastAGI script may send outside the media path.
_SIMPLE_REPLIES = {
    "ANSWER": "200 result=0",
    "VERBOSE": "200 result=1",
    "NOOP": "200 result=0",
    "EXEC": "200 result=0",
    "CHANNEL STATUS": "200 result=6",
    "SET MUSIC": "200 result=0",
    "DATABASE PUT": "200 result=1",
}


@dataclass
class CallResult:
    completed: bool
    variables: dict[str, str] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)


def _prompt_text(path: str) -> str:
    """The words of a prompt: the cache keeps them beside the audio as <name>.txt."""
    try:
        return Path(path + ".txt").read_text(encoding="utf-8").strip()
    except OSError:
        return f"<{path}>"


def _play(path: str) -> None:
    player = shutil.which("aplay") or shutil.which("play")
    if player:
        subprocess.run([player, "-q", path + ".wav"], check=False, capture_output=True)


@dataclass(frozen=True)
class Spoken:
    """A voice answer: what the caller says (for the terminal) and its audio (slin16, 8 kHz)."""

    label: str
    pcm: bytes


async def spoken_answers(voice: list[tuple[str, str]], language: str) -> list[Spoken]:
    """``[("say", "да"), ("wav", "answer.wav")]`` made into audio before the call (off the call's clock)."""
    out: list[Spoken] = []
    for kind, value in voice:
        if kind == "wav":
            out.append(Spoken(f"<{value}>", await asyncio.to_thread(wav_file_pcm, Path(value))))
        else:
            out.append(Spoken(f'"{value}"', await asyncio.to_thread(speech_pcm, value, language)))
    return out


def _env_block(script: str, host: str, port: int, caller_id: str, uniqueid: str,
               args: tuple[str, ...] = ()) -> bytes:
    env = {
        "network": "yes",
        "network_script": script,
        "request": f"agi://{host}:{port}/{script}",
        "channel": f"PJSIP/ivr-call-{uniqueid.replace('.', '')}",
        "language": "ru",
        "type": "PJSIP",
        "uniqueid": uniqueid,
        "version": "22.10.1",
        "callerid": caller_id or "unknown",
        "calleridname": "unknown",
        "callingpres": "0" if caller_id else "32",
        "callingani2": "0",
        "callington": "0",
        "callingtns": "0",
        "dnid": "unknown",
        "rdnis": "unknown",
        "context": "ivr-inbound",
        "extension": "start",
        "priority": "3",
        "enhanced": "0.0",
        "accountcode": "",
        "threadid": "1",
    }
    env.update({f"arg_{i}": value for i, value in enumerate(args, start=1)})
    return "".join(f"agi_{k}: {v}\n" for k, v in env.items()).encode() + b"\n"


def _answer_get_data(answer: str | None, max_digits: int) -> str:
    """Asterisk's GET DATA reply for what the caller typed (None: typed nothing)."""
    if not answer:
        return "200 result= (timeout)"
    digits = answer.rstrip("#")
    if answer.endswith("#") or len(digits) >= max_digits:
        return f"200 result={digits}"
    return f"200 result={digits} (timeout)"


async def place_call(
    *,
    host: str,
    port: int,
    script: str,
    caller_id: str,
    answers: list[str],
    voice: list[Spoken] | None = None,
    args: tuple[str, ...] = (),
    play: bool = False,
    out: TextIO,
    idle_limit: float = 60.0,
) -> CallResult:
    """``args``: the AGI arguments the dialplan passes (``speech=1`` for a line that takes voice)."""
    # Asterisk's form "<epoch>.<sequence>"; it becomes the linkedid, i.e. the call id and the order's
    # idempotency key, so two calls must never share it (cutting it to whole seconds made a second
    # call within the same second a "reconnect" of the first that replayed its order).
    uniqueid = f"{time.time():.6f}"
    result = CallResult(completed=False)
    pending = list(answers)
    saying = list(voice or [])
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError) as exc:
        print(f"cannot reach the FastAGI server at {host}:{port}: {exc}", file=out)
        print("the dialplan would now continue with AGISTATUS=FAILURE and queue the caller", file=out)
        return result
    writer.write(_env_block(script, host, port, caller_id, uniqueid, args))
    await writer.drain()
    print(f"calling {host}:{port}/{script} as {caller_id or 'withheld number'}", file=out)
    try:
        while True:
            line = await asyncio.wait_for(reader.readline(), idle_limit)
            if not line:
                break  # the server closed the socket: the dialplan continues
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            words = split_agi_args(command)
            if len(words) >= 3 and [w.upper() for w in words[:2]] == ["EXEC", "AUDIOSOCKET"]:
                reply, hung_up = await _audiosocket(words[2], pending, saying, out)
                # A caller who hung up: result=-1, then Asterisk's separate HANGUP line; a connect
                # that failed is result=-1 alone (the channel lives on, the AGI goes on).
                writer.write((reply + "\n" + ("HANGUP\n" if hung_up else "")).encode())
                await writer.drain()
                continue
            reply = _reply(line.decode("utf-8", "replace").rstrip("\r\n"), result, pending, uniqueid, caller_id,
                           play, out)
            writer.write((reply + "\n").encode())
            await writer.drain()
        result.completed = True
    except TimeoutError:
        print(f"the server said nothing for {idle_limit:.0f} s; hanging up", file=out)
    except OSError as exc:  # reset by the peer mid-call: a message, not a traceback
        print(f"the connection to the FastAGI server broke: {exc!r}", file=out)
    finally:
        writer.close()
    outcome = result.variables.get(Var.RESULT, "")
    # What extensions_ivr.conf does with IVR_RESULT: "done" hangs up, anything else (empty too) queues.
    route = "Hangup()" if outcome == IvrResult.DONE else "Queue(operators)"
    summary = " ".join(f"{k}={v}" for k, v in sorted(result.variables.items()) if k in VARIABLES)
    print(f"result: {summary or f'{Var.RESULT} unset'} -> dialplan: {route}", file=out)
    return result


async def _audiosocket(data: str, keys: list[str], voice: list[Spoken], out: TextIO) -> tuple[str, bool]:
    """One question over AudioSocket: the caller listens to the prompt, then answers. Returns the
    EXEC reply and whether the caller hung up."""
    if voice:
        answer = voice.pop(0)
        turn, said = CallerTurn(speech=answer.pcm, after_prompt=True, max_seconds=120), f"says {answer.label}"
    elif keys:
        typed = keys.pop(0)
        turn, said = CallerTurn(keys=typed, after_prompt=True, max_seconds=120), f"presses {typed or '(nothing)'}"
    else:
        turn, said = CallerTurn(max_seconds=120), "(says nothing)"
    print("  robot: asks over AudioSocket (voice or keys)", file=out)
    leg = await audiosocket_leg(data, turn)
    if not leg.connected:
        print(f"  !! Asterisk could not connect to the AudioSocket at {data.partition(',')[2]}", file=out)
        return leg.reply, False
    print(f"  robot: ({leg.prompt_frames * 0.02:.1f} s of prompt heard)", file=out)
    print(f"  caller: {said}", file=out)
    if not leg.server_hung_up:
        print("  caller: hangs up (the robot never ended the question)", file=out)
    return leg.reply, not leg.server_hung_up


def _reply(
    command: str, result: CallResult, pending: list[str], uniqueid: str, caller_id: str, play: bool, out: TextIO
) -> str:
    words = split_agi_args(command)
    verb = " ".join(words[:2]).upper() if len(words) > 1 else command.upper()
    if verb == "GET VARIABLE" and len(words) == 3:
        name = words[2]
        known = {"CHANNEL(linkedid)": uniqueid, "CALLERID(num)": caller_id, **result.variables}
        return f"200 result=1 ({known[name]})" if name in known else "200 result=0"
    if verb == "SET VARIABLE" and len(words) == 4:
        result.variables[words[2]] = words[3]
        return "200 result=1"
    if verb == "EXEC MSET" and len(words) == 3:  # Asterisk's MSet: name=value,name=value
        for pair in words[2].split(","):
            name, _, value = pair.partition("=")
            result.variables[name] = value
        return "200 result=0"
    if verb in ("STREAM FILE", "GET DATA") and len(words) >= 3:
        path = words[2]
        if not Path(path + ".wav").exists():
            print(f"  !! Asterisk cannot play {path}: the file does not exist", file=out)
            return "200 result=-1 endpos=0"
        text = _prompt_text(path)
        result.prompts.append(text)
        print(f"  robot: {text}", file=out)
        if play:
            _play(path)
        if verb == "STREAM FILE":
            return "200 result=0 endpos=8000"
        max_digits = int(words[4]) if len(words) > 4 and words[4].isdigit() else 1024
        answer = pending.pop(0) if pending else None
        print(f"  caller: {answer or '(says nothing)'}", file=out)
        return _answer_get_data(answer, max_digits)
    if command.upper() == "HANGUP":
        return "200 result=1\nHANGUP"
    for prefix, reply in _SIMPLE_REPLIES.items():
        if command.upper().startswith(prefix):
            return reply
    return "510 Invalid or unknown command"
