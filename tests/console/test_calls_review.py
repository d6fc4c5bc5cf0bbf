"""The supervisor's review tools over real HTTP, both backends: /calls sorted by a whitelisted
column, its CSV and XLSX exports (formats, bounds, roles), the orders of a call on its page and the
call of an order on the customer's page, the recording's waveform peaks (and the player's markup).
Seeded by tests/console/test_calls_pages.py (three calls; waits: none, 14 s, 30 s)."""

from __future__ import annotations

import csv
import io
import struct
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from crm_bridge.call_search import DEFAULT_SORT, SORT_KEYS, parse_sort
from ivr.web.console import calls_export
from ivr.web.console.recording_peaks import BUCKETS, cached_peaks, compute_peaks
from tests.console.conftest import PASSWORD, login
from tests.console.test_calls_pages import AT, WAV, client, recordings, rows  # noqa: F401 (fixtures)

OLDEST, RECORDED, NEWEST = "1763622000.10", "1763625600.20", "1763712000.30"


# --- sorting ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("asked", "used"), [
    ("wait", "wait"), ("-wait", "-wait"), ("started", "started"), ("-started", "-started"),
    ("", DEFAULT_SORT), (None, DEFAULT_SORT), ("--wait", DEFAULT_SORT), ("call_id", DEFAULT_SORT),
    ("wait desc", DEFAULT_SORT), ("started_at; DROP TABLE calls", DEFAULT_SORT), ("WAIT", DEFAULT_SORT),
])
def test_sort_keys_are_a_whitelist(asked, used):
    assert parse_sort(asked) == used


def test_every_sort_key_has_a_header():
    from ivr.web.console.calls_pages import SORT_COLUMNS

    assert [key for key, _ in SORT_COLUMNS] == list(SORT_KEYS)


async def _listed(client, **query) -> list[str]:  # noqa: F811
    resp = await client.get("/calls", params=query)
    assert resp.status == 200
    return rows(await resp.text())


async def test_sorted_by_any_column_empty_values_last(client):  # noqa: F811
    await login(client, "op1", PASSWORD)
    assert await _listed(client) == [NEWEST, RECORDED, OLDEST]
    assert await _listed(client, sort="started") == [OLDEST, RECORDED, NEWEST]
    assert await _listed(client, sort="wait") == [RECORDED, NEWEST, OLDEST]  # 14 s, 30 s, none
    assert await _listed(client, sort="-wait") == [NEWEST, RECORDED, OLDEST]  # none stays last
    assert await _listed(client, sort="customer") == [OLDEST, RECORDED, NEWEST]  # Иванов, Петрова, —
    assert await _listed(client, sort="nonsense") == [NEWEST, RECORDED, OLDEST]
    page = await (await client.get("/calls", params={"sort": "-wait", "outcome": "operator"})).text()
    assert '<th aria-sort="descending"><a class="sort sort-wait" href="/calls?outcome=operator&amp;sort=wait">' in page
    assert 'href="/calls?outcome=operator&amp;sort=talk"' in page  # another column: same filter, ascending
    assert '<input type="hidden" name="sort" value="-wait">' in page  # the search form keeps the order


# --- exports ----------------------------------------------------------------------------------------

async def test_csv_export_for_a_russian_excel(client):  # noqa: F811
    await login(client, "sup1", PASSWORD)
    resp = await client.get("/calls.csv", params={"sort": "-wait"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="calls.csv"'
    assert "X-Export-Truncated" not in resp.headers
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert table[0] == calls_export.HEADERS
    assert [r[2] for r in table[1:]] == [NEWEST, RECORDED, OLDEST]  # the page's order
    row = dict(zip(table[0], table[2], strict=True))
    assert row["Начало"] == "20 ноября 2026, 11:00:00"  # business time, formats.datetime_text
    assert row["Номер (E.164)"] == "+79031112233" and row["Клиент"] == "C002"
    assert (row["Ожидание"], row["Ожидание, с"], row["Разговор"], row["Разговор, с"]) == (
        "0:14", "14,0", "1:15", "75,0")
    assert (row["Итог"], row["Код итога"], row["Оператор"], row["Запись"]) == (
        "Ответил оператор", "operator_answered", "Анна", "есть")
    oldest = dict(zip(table[0], table[3], strict=True))
    assert (oldest["Ожидание"], oldest["Ожидание, с"], oldest["Заказ робота"]) == ("", "", "A-1001")
    # the filter of the page applies
    only = await (await client.get("/calls.csv", params={"outcome": "operator"})).read()
    assert [r[2] for r in csv.reader(io.StringIO(only.decode("utf-8-sig")), delimiter=";")][1:] == [NEWEST]


async def test_xlsx_export(client):  # noqa: F811
    await login(client, "adm1", PASSWORD)
    resp = await client.get("/calls.xlsx", params={"sort": "wait"})
    assert resp.status == 200 and resp.headers["Content-Type"] == calls_export.XLSX_TYPE
    sheet = load_workbook(io.BytesIO(await resp.read()), read_only=True)["Звонки"]
    table = list(sheet.iter_rows(values_only=True))
    assert list(table[0]) == calls_export.HEADERS
    assert [r[2] for r in table[1:]] == [RECORDED, NEWEST, OLDEST]
    assert table[1][11] == 14.0 and table[1][10] == "0:14"  # seconds stay numbers a sheet can sum


async def test_exports_are_bounded_and_say_so(client, monkeypatch):  # noqa: F811
    monkeypatch.setattr(calls_export, "MAX_ROWS", 2)
    await login(client, "sup1", PASSWORD)
    for path in ("/calls.csv", "/calls.xlsx"):
        resp = await client.get(path)
        assert resp.status == 200 and resp.headers["X-Export-Truncated"] == "3", path
    text = (await (await client.get("/calls.csv")).read()).decode("utf-8-sig")
    assert len(text.splitlines()) == 1 + 2  # the header and the two newest


async def test_operators_see_no_export(client):  # noqa: F811
    await login(client, "op1", PASSWORD)
    assert "/calls.csv" not in await (await client.get("/calls")).text()
    for path in ("/calls.csv", "/calls.xlsx"):
        assert (await client.get(path)).status == 403
    await login(client, "sup1", PASSWORD)
    page = await (await client.get("/calls", params={"outcome": "operator"})).text()
    assert 'id="export-csv" href="/calls.csv?outcome=operator"' in page and "не больше 100" in page


# --- order <-> call -----------------------------------------------------------------------------------

async def test_operator_order_is_linked_both_ways(client, store):  # noqa: F811
    placed = await store.place_order(idempotency_key="op:x", customer_id="C002", lines=[("WATER-19", 2)],
                                     source="operator", call_id=RECORDED, now=AT + timedelta(hours=1, minutes=2))
    assert placed.order.call_id == RECORDED
    card = await store.get_customer_card("C002")
    assert {o.order_id: o.call_id for o in card.orders}[placed.order.order_id] == RECORDED
    replayed = await store.place_order(idempotency_key="op:x", customer_id="C002", lines=[("WATER-19", 2)],
                                       source="operator", call_id=RECORDED)
    assert not replayed.created and replayed.order.call_id == RECORDED
    await login(client, "sup1", PASSWORD)
    page = await (await client.get(f"/calls/{RECORDED}")).text()
    assert 'id="call-orders"' in page and placed.order.order_id in page
    assert f'href="/customers/C002/orders/{placed.order.order_id}"' in page and "оператор, 11:02:00" in page
    order_page = await (await client.get(f"/customers/C002/orders/{placed.order.order_id}")).text()
    assert f'<a id="order-call" href="/calls/{RECORDED}">' in order_page
    customer = await (await client.get("/customers/C002")).text()
    assert f'<tr id="order-{placed.order.order_id}" data-order="{placed.order.order_id}"' in customer
    assert f'<a class="order-call" href="/calls/{RECORDED}">' in customer


# --- the player and its waveform -------------------------------------------------------------------

async def test_player_markup_and_peaks(client):  # noqa: F811
    await login(client, "sup1", PASSWORD)
    page = await (await client.get(f"/calls/{RECORDED}")).text()
    assert f'data-peaks-url="/calls/{RECORDED}/recording/peaks"' in page
    assert '<script src="/static/player.js" defer></script>' in page
    assert 'data-transcript=""' in page  # no transcript with times: the hook stays off
    resp = await client.get(f"/calls/{RECORDED}/recording/peaks")
    assert resp.status == 200
    body = await resp.json()
    assert len(body["peaks"]) == BUCKETS and abs(body["duration"] - 6.8) < 0.01
    assert max(body["peaks"]) == 1.0 and min(body["peaks"]) >= 0
    assert (await client.get(f"/calls/{OLDEST}/recording/peaks")).status == 404  # no recording
    await login(client, "op1", PASSWORD)
    assert (await client.get(f"/calls/{RECORDED}/recording/peaks")).status == 403


async def test_transcript_lines_with_times_are_the_players_hook(client, recordings):  # noqa: F811
    (recordings / "call-20.json").write_text(
        '{"segments": [{"start": 0.5, "speaker": "Клиент", "text": "Алло"}, {"text": "без времени"}]}')
    await login(client, "sup1", PASSWORD)
    page = await (await client.get(f"/calls/{RECORDED}")).text()
    assert 'data-transcript="lines"' in page
    assert '<p class="transcript-line" data-start="0.50">' in page
    assert '<p class="transcript-line">без времени</p>' in page  # no time: shown, not clickable


def _wav(frames: bytes, *, bits: int = 16, channels: int = 1, rate: int = 1000, sizes: bool = True) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    data_size = len(frames) if sizes else 0
    riff_size = 36 + len(frames) if sizes else 0
    return b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", data_size) + frames


def test_peaks_of_the_real_recording_and_of_crafted_files(tmp_path):
    real = compute_peaks(WAV)
    assert real is not None and len(real["peaks"]) == BUCKETS and real["duration"] == 6.8
    # a MixMonitor that never closed its file: zero sizes in the header, the audio is still read
    loud_then_quiet = struct.pack("<4h", 16000, -16000, 800, -800)
    unclosed = tmp_path / "unclosed.wav"
    unclosed.write_bytes(_wav(loud_then_quiet, sizes=False))
    assert compute_peaks(unclosed, buckets=2) == {"duration": 0.004, "peaks": [1.0, 0.05]}
    # 8-bit stereo: the louder channel counts
    stereo = tmp_path / "stereo.wav"
    stereo.write_bytes(_wav(bytes([128, 255, 128, 128]), bits=8, channels=2))
    assert compute_peaks(stereo, buckets=4)["peaks"] == [1.0, 0.0]
    silent = tmp_path / "silent.wav"
    silent.write_bytes(_wav(b"\x00\x00" * 80))
    assert compute_peaks(silent)["peaks"] == [0.0] * 80
    empty = tmp_path / "empty.wav"
    empty.write_bytes(_wav(b""))
    assert compute_peaks(empty) == {"duration": 0.0, "peaks": []}
    for name, data in (("mp3.wav", b"ID3\x03" + bytes(100)), ("short.wav", b"RIFF")):
        (tmp_path / name).write_bytes(data)
        assert compute_peaks(tmp_path / name) is None, name


def test_peaks_are_cached_until_the_file_changes(tmp_path):
    path = tmp_path / "growing.wav"
    path.write_bytes(_wav(struct.pack("<2h", 1000, 0)))
    first = cached_peaks(path)
    assert cached_peaks(path) is first
    path.write_bytes(_wav(struct.pack("<4h", 1000, 0, 2000, 0)))  # still recording: new size
    assert cached_peaks(path) is not first and cached_peaks(path)["duration"] == 0.004
