"""GET /calls/{id}/recording: who may hear it, HTTP Range (seeking), and that nothing outside the
recordings directory is ever served, whatever the call row says. Both backends.

The recording is the real MixMonitor file from the traces, copied into a temporary recordings
directory.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm_bridge.contract.outcomes import facts_implying
from ivr.web.console.deps import DEPS_KEY
from tests.console.conftest import PASSWORD, login, start_client
from tests.traces import TRACES

WAV = TRACES / "recordings" / "mixmonitor-sip-call.wav"
SECRET = b"TOP-SECRET-NOT-A-RECORDING " * 20

pytestmark = pytest.mark.skipif(not WAV.exists(), reason=f"recording trace not found: {WAV}")


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """tmp/recordings/ holds the real recording; tmp/secret.wav and tmp/elsewhere/ are outside it."""
    recordings = tmp_path / "recordings"
    (recordings / "2026" / "11").mkdir(parents=True)
    shutil.copyfile(WAV, recordings / "2026" / "11" / "call-1.wav")
    (tmp_path / "secret.wav").write_bytes(SECRET)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "other.wav").write_bytes(SECRET)
    os.symlink(tmp_path / "secret.wav", recordings / "link-out.wav")
    os.symlink(tmp_path / "elsewhere", recordings / "dir-out")
    os.symlink(recordings / "2026" / "11" / "call-1.wav", recordings / "link-in.wav")
    return recordings


async def _call(store, call_id: str, recording_path: str | None) -> None:
    at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    await store.record_call_start(call_id=call_id, caller_number="+79161234567", normalized_number="+79161234567",
                                  customer_id=None, channel="PJSIP/trunk-1", script="repeat-order", started_at=at)
    await store.update_call(call_id, facts=facts_implying("operator_answered"), operator_interface="PJSIP/101",
                            recording_path=recording_path, recording_seconds=3.2, recording_bytes=1000)


@pytest.fixture
async def served(store, console_app, spool):
    console_app[DEPS_KEY].recordings_dir = spool
    await _call(store, "1700000000.1", str(spool / "2026" / "11" / "call-1.wav"))
    await _call(store, "1700000000.2", "2026/11/call-1.wav")  # relative to the directory
    client = await start_client(console_app)
    yield client
    await client.close()


async def test_supervisor_gets_the_whole_file(served, spool):
    data = WAV.read_bytes()
    await login(served, "sup1", PASSWORD)
    for call_id in ("1700000000.1", "1700000000.2"):
        resp = await served.get(f"/calls/{call_id}/recording")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "audio/wav"
        assert resp.headers["Cache-Control"].startswith("private")
        assert resp.headers.get("Accept-Ranges") == "bytes"
        assert int(resp.headers["Content-Length"]) == len(data)
        assert await resp.read() == data


async def test_admin_may_listen_too(served):
    await login(served, "adm1", PASSWORD)
    resp = await served.get("/calls/1700000000.1/recording", headers={"Range": "bytes=0-43"})
    assert resp.status == 206 and (await resp.read())[:4] == b"RIFF"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=100-199", 100, 199),
        ("bytes=-500", None, None),  # the last 500 bytes
        ("bytes=1000-", 1000, None),  # open-ended
        ("bytes=0-0", 0, 0),
    ],
)
async def test_range_requests(served, header, start, end):
    data = WAV.read_bytes()
    size = len(data)
    if start is None:
        start, end = size - 500, size - 1
    if end is None:
        end = size - 1
    await login(served, "sup1", PASSWORD)
    resp = await served.get("/calls/1700000000.1/recording", headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
    assert resp.headers["Content-Type"] == "audio/wav"
    body = await resp.read()
    assert body == data[start : end + 1]
    assert int(resp.headers["Content-Length"]) == end - start + 1


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={big}-{bigger}"])
async def test_unsatisfiable_range_is_416(served, header):
    size = WAV.stat().st_size
    await login(served, "sup1", PASSWORD)
    resp = await served.get("/calls/1700000000.1/recording",
                            headers={"Range": header.format(size=size, big=size + 10, bigger=size + 20)})
    assert resp.status == 416
    assert resp.headers.get("Content-Range") == f"bytes */{size}"
    assert b"RIFF" not in await resp.read()


async def test_operator_is_refused_and_anonymous_sent_to_sign_in(served):
    resp = await served.get("/calls/1700000000.1/recording", allow_redirects=False)
    assert resp.status in (302, 303) and resp.headers["Location"].startswith("/login")
    await login(served, "op1", PASSWORD)
    resp = await served.get("/calls/1700000000.1/recording")
    assert resp.status == 403
    assert b"RIFF" not in await resp.read()
    resp = await served.get("/calls/1700000000.1/recording", headers={"Range": "bytes=0-99"})
    assert resp.status == 403


@pytest.mark.parametrize(
    "recording_path",
    [
        "../secret.wav",
        "2026/../../secret.wav",
        "%2e%2e/secret.wav",
        "..%2fsecret.wav",
        "{outside}/secret.wav",  # absolute, elsewhere
        "{outside}/elsewhere/other.wav",
        "/etc/passwd",
        "{spool}/../secret.wav",
        "{spool}/link-out.wav",  # a symlink inside pointing out
        "link-out.wav",
        "dir-out/other.wav",  # through a symlinked directory
        "{spool}",  # the directory itself
        "2026/11",  # a directory inside
        "missing.wav",  # inside, but no such file
        "",
    ],
)
async def test_nothing_outside_the_directory_is_served(store, console_app, spool, recording_path):
    path = recording_path.format(outside=spool.parent, spool=spool)
    console_app[DEPS_KEY].recordings_dir = spool
    await _call(store, "evil.1", path)
    client = await start_client(console_app)
    try:
        await login(client, "sup1", PASSWORD)
        for headers in ({}, {"Range": "bytes=0-99"}):
            resp = await client.get("/calls/evil.1/recording", headers=headers)
            body = await resp.read()
            assert resp.status == 404, (path, resp.status)
            assert b"TOP-SECRET" not in body and b"root:" not in body and b"RIFF" not in body
        page = await client.get("/calls/evil.1")  # the page itself still works
        assert page.status == 200
    finally:
        await client.close()


async def test_symlink_inside_the_directory_is_followed(store, console_app, spool):
    console_app[DEPS_KEY].recordings_dir = spool
    await _call(store, "in.1", "link-in.wav")
    client = await start_client(console_app)
    try:
        await login(client, "sup1", PASSWORD)
        resp = await client.get("/calls/in.1/recording")
        assert resp.status == 200 and await resp.read() == WAV.read_bytes()
    finally:
        await client.close()


@pytest.mark.parametrize(
    "url",
    [
        "/calls/..%2f..%2fetc%2fpasswd/recording",
        "/calls/%2e%2e/recording",
        "/calls/..%2Fsecret.wav/recording",
        "/calls/no-such-call/recording",
        "/calls/%00/recording",
    ],
)
async def test_traversal_in_the_url_finds_no_call(served, url):
    await login(served, "sup1", PASSWORD)
    resp = await served.get(url)
    body = await resp.read()
    assert resp.status == 404
    assert b"TOP-SECRET" not in body and b"root:" not in body and b"RIFF" not in body


async def test_call_without_recording_is_404(store, console_app, spool):
    console_app[DEPS_KEY].recordings_dir = spool
    await _call(store, "none.1", None)
    client = await start_client(console_app)
    try:
        await login(client, "sup1", PASSWORD)
        assert (await client.get("/calls/none.1/recording")).status == 404
    finally:
        await client.close()
