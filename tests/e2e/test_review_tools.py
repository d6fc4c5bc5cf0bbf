"""The supervisor's review tools in Chromium (issue 10, point 9), as a person would notice them:

- an order op1 places from the card of the call on screen is linked to that call: the supervisor
  sees it under "Заказы в звонке" on the call page and follows the customer's order row to the call;
- the recording player: the waveform is drawn, a click on it seeks, 1× / 1.5× / 2× change the
  element's playbackRate, the keyboard moves through the recording;
- /calls sorts by a column header and downloads the current selection as CSV and as XLSX;
- /stats shows the day-by-day trend and the automation rate with its numerator and denominator.

With IVR_DOC_SCREENSHOTS=1 the run saves the README's screenshots: docs/screenshots/operator.png
(op1's screen with the card and the order placed) and docs/screenshots/stats.png.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import load_workbook
from playwright.async_api import expect

from crm_bridge.contract.outcomes import facts_implying
from tests.e2e.conftest import copy_recording, e2e, needs_chromium, new_page, sign_in, wait_for
from tests.e2e.test_operator_screen_pop import LINKEDID, ORDER_TEXT, split_trace

pytestmark = [e2e, needs_chromium]

# The README's pictures are rewritten only on request (IVR_DOC_SCREENSHOTS=1): a plain test run must
# leave the checkout as it found it. Otherwise they go to a temporary directory (still taken).
DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
RECORDED = "1795760000.7"


async def doc_screenshot(page, name: str) -> None:
    """The README's pictures: the visible window (not the whole page), so they stay readable."""
    folder = DOCS_SHOTS if os.environ.get("IVR_DOC_SCREENSHOTS") == "1" else Path(tempfile.mkdtemp(prefix="ivr-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"))
    assert (folder / f"{name}.png").stat().st_size > 0


async def test_operator_order_is_linked_to_its_call(browser, console):
    ringing, answer, rest = split_trace()
    page = await new_page(browser, console)
    await sign_in(page, "op1")
    await expect(page.locator("#feed-status")).to_contain_text("обновлено")
    await console.call("+79161234567", ["0"], uniqueid=LINKEDID)
    await console.call_row(LINKEDID, "operator")
    await console.fake_ami.push(ringing)
    await console.fake_ami.push(answer)
    await expect(page.locator("#call-state")).to_have_text("Разговор")
    body = page.locator("#card-body")
    await body.locator("tr:has(td:text-is('H-1013')) button.repeat-order").click()
    result = body.locator("tr:has(td:text-is('H-1013')) .repeat-result")
    await expect(result).to_have_text(ORDER_TEXT)
    order_id = ORDER_TEXT.search(await result.inner_text()).group(1)
    await doc_screenshot(page, "operator")
    (placed,) = await console.operator_orders("C001")
    assert (placed.order_id, placed.call_id) == (order_id, LINKEDID)
    await console.fake_ami.push(rest)
    await console.call_row(LINKEDID, "operator_answered")

    supervisor = await new_page(browser, console)
    await sign_in(supervisor, "sup1")
    await supervisor.goto(f"/calls/{LINKEDID}")
    orders = supervisor.locator("#call-orders")
    await expect(orders).to_contain_text(order_id)
    await expect(orders.locator(".order-operator")).to_contain_text("оператор")
    # the order's page and the customer's order row lead back to the call it was taken in
    await orders.locator(f"a:text-is('{order_id}')").click()
    await expect(supervisor).to_have_url(re.compile(rf"/customers/C001/orders/{order_id}$"))
    await supervisor.locator("#order-call").click()
    await expect(supervisor).to_have_url(re.compile(rf"/calls/{re.escape(LINKEDID)}$"))
    await supervisor.goto("/customers/C001")
    await supervisor.locator(f"#order-{order_id} a.order-call").click()
    await expect(supervisor).to_have_url(re.compile(rf"/calls/{re.escape(LINKEDID)}$"))
    assert page.js_errors == [] and supervisor.js_errors == [], (page.js_errors, supervisor.js_errors)


async def _recorded_call(console) -> None:
    path = copy_recording(console, f"call-{RECORDED}.wav")
    now = datetime.now(ZoneInfo("Europe/Moscow"))
    started = max(now - timedelta(minutes=5), now.replace(hour=0, minute=0, second=0, microsecond=0))  # today
    await console.store.record_call_start(
        call_id=RECORDED, caller_number="+79161234567", normalized_number="+79161234567", customer_id="C001",
        channel="PJSIP/trunk-00000007", script="repeat-order", started_at=started)
    await console.store.update_call(
        RECORDED, facts=facts_implying("operator_answered"), reason="caller_request",
        ended_at=started + timedelta(minutes=1), queue="operators", queue_entered_at=started + timedelta(seconds=20),
        wait_seconds=42.0, answered_at=started + timedelta(seconds=62), talk_seconds=30.0,
        operator_interface="Local/101@operator-agent/n", recording_path=str(path), recording_seconds=6.8,
        recording_bytes=path.stat().st_size)


async def test_player_draws_the_waveform_seeks_and_changes_speed(browser, console):
    await _recorded_call(console)
    page = await new_page(browser, console)
    await sign_in(page, "sup1")
    await page.goto(f"/calls/{RECORDED}")
    player = page.locator("#player")
    await expect(player).to_have_attribute("data-waveform", "ready")
    wave = player.locator("canvas.wave")
    assert int(await wave.get_attribute("data-drawn")) > 100  # bars from the server's peaks
    # something is drawn: blue bars on the canvas, not an empty box
    painted = await wave.evaluate("""c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i + 2] > 200 && d[i] < 200) n++;
        return n; }""")
    assert painted > 500, painted
    audio = page.locator("#player audio")
    await wait_for(lambda: audio.evaluate("a => a.readyState >= 1"), 5.0, "the recording's metadata")
    duration = await audio.evaluate("a => a.duration")

    # a click three quarters along the waveform seeks there
    box = await wave.bounding_box()
    await wave.click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
    position = await audio.evaluate("a => a.currentTime")
    assert abs(position - duration * 0.75) < 0.25, (position, duration)
    await expect(wave).to_have_attribute("aria-valuenow", str(round(position)))

    # the speed buttons set the element's rate, and say which one is on
    for label, rate in (("2×", 2), ("1,5×", 1.5), ("1×", 1)):
        await player.get_by_role("button", name=label, exact=True).click()
        assert await audio.evaluate("a => a.playbackRate") == rate
        await expect(player.get_by_role("button", name=label, exact=True)).to_have_attribute("aria-pressed", "true")

    # the keyboard: Home goes to the start, → moves 5 s, Space plays
    await wave.focus()
    await page.keyboard.press("Home")
    assert await audio.evaluate("a => a.currentTime") == 0
    await page.keyboard.press("ArrowRight")
    assert abs(await audio.evaluate("a => a.currentTime") - 5) < 0.01
    await page.keyboard.press("Home")
    await page.keyboard.press(" ")
    await wait_for(lambda: audio.evaluate("a => a.currentTime > 0.2"), 5.0, "playing")
    await expect(player.locator("button.play")).to_contain_text("Пауза")
    assert page.js_errors == [], page.js_errors


async def test_calls_sort_and_export(browser, console):
    await _recorded_call(console)
    await console.call("+79161234567", ["1"])  # a robot order: a second call, no wait
    page = await new_page(browser, console)
    await sign_in(page, "sup1")
    await page.goto("/calls")
    await page.locator("th a.sort-wait").click()
    await expect(page).to_have_url(re.compile(r"sort=wait"))
    await expect(page.locator("th:has(a.sort-wait)")).to_have_attribute("aria-sort", "ascending")
    await page.locator("th a.sort-wait").click()
    await expect(page.locator("th:has(a.sort-wait)")).to_have_attribute("aria-sort", "descending")
    first = page.locator("table.calls tbody tr").first
    await expect(first).to_contain_text("0:42")  # the longest wait first

    async with page.expect_download() as csv_info:
        await page.locator("#export-csv").click()
    csv_file = await (await csv_info.value).path()
    raw = Path(csv_file).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("Начало;Конец;Звонок;Номер")
    assert len(lines) == 3 and RECORDED in lines[1]  # sorted as on the page: the 42 s wait first
    assert ";0:42;42,0;" in lines[1]

    async with page.expect_download() as xlsx_info:
        await page.locator("#export-xlsx").click()
    download = await xlsx_info.value
    assert download.suggested_filename == "calls.xlsx"
    sheet = load_workbook(io.BytesIO(Path(await download.path()).read_bytes()), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("Начало", "Конец", "Звонок") and len(rows) == 3
    assert rows[1][2] == RECORDED and rows[1][11] == 42.0
    assert page.js_errors == [], page.js_errors


# The six days before today: (robot orders, operator answered within 20 s, after 20 s+, abandoned in
# the queue, hung up in the robot): a week that moves, for the trend and the README's picture.
PAST_WEEK = [(5, 2, 1, 1, 1), (7, 1, 2, 0, 2), (4, 3, 1, 2, 0), (8, 1, 0, 1, 1), (6, 2, 2, 0, 1), (9, 1, 1, 1, 0)]


async def _past_week(console) -> None:
    noon = datetime.now(ZoneInfo("Europe/Moscow")).replace(hour=12, minute=0, second=0, microsecond=0)
    serial = 0
    for back, (orders, fast, slow, abandoned, dropped) in zip(range(6, 0, -1), PAST_WEEK, strict=True):
        day = noon - timedelta(days=back)  # from noon: a day's calls never cross midnight
        kinds = ["order_placed"] * orders + ["fast"] * fast + ["slow"] * slow + ["abandoned_in_queue"] * abandoned \
            + ["abandoned_in_ivr"] * dropped
        for n, kind in enumerate(kinds):
            serial += 1
            call_id, at = f"1795000000.{serial}", day + timedelta(minutes=7 * n)
            await console.store.record_call_start(
                call_id=call_id, caller_number="+79161234567", normalized_number="+79161234567",
                customer_id="C001", channel="PJSIP/trunk-1", script="repeat-order", started_at=at)
            queued = {"queue": "operators", "queue_entered_at": at + timedelta(seconds=30)}
            if kind in ("order_placed", "fast"):  # the robot's order, or the one the operator took
                await console.store.place_order(
                    idempotency_key=f"seed:{call_id}", customer_id="C001", lines=[("WATER-19", 2)],
                    source="ivr" if kind == "order_placed" else "operator", call_id=call_id,
                    now=at + timedelta(minutes=1))
            if kind in ("fast", "slow"):
                wait = 8.0 if kind == "fast" else 55.0
                await console.store.update_call(
                    call_id, facts=facts_implying("operator_answered"), reason="caller_request", wait_seconds=wait,
                    answered_at=at + timedelta(seconds=30 + wait), talk_seconds=70.0,
                    ended_at=at + timedelta(minutes=3), **queued)
            elif kind == "abandoned_in_queue":
                await console.store.update_call(call_id, facts=facts_implying(kind), reason="caller_request",
                                                wait_seconds=40.0, ended_at=at + timedelta(minutes=2), **queued)
            else:
                await console.store.update_call(call_id, facts=facts_implying(kind), reason=kind,
                                                ended_at=at + timedelta(minutes=1))


async def test_stats_trend_and_the_honest_automation_rate(browser, console):
    await _past_week(console)
    await _recorded_call(console)  # an operator answered: the robot did not finish it
    fake = await console.call("+79161234567", ["1"])  # the robot placed an order: finished
    await console.call_row(fake.channel_vars["UNIQUEID"], "order_placed")
    page = await new_page(browser, console)
    await sign_in(page, "sup1")
    await page.goto("/stats")
    await expect(page.locator("#automation-rate")).to_have_text("50,0 %")
    await expect(page.locator("#automation-numbers")).to_have_text("1 из 2")
    await expect(page.locator("#automation")).to_contain_text("из звонков, которые робот принял")
    await expect(page.locator("#trend svg polyline.series-automation_rate")).to_have_count(1)
    today = page.locator("#days tbody tr").last
    await expect(today).to_contain_text("50,0 % (1 из 2)")
    await page.locator(".presets a", has_text="7 дней").click()
    await expect(page.locator("#days tbody tr")).to_have_count(7)
    # the first day of the week: 5 of its 10 calls finished by the robot; 2 of 4 queued answered in 20 s
    await expect(page.locator("#days tbody tr").first).to_contain_text("50,0 % (5 из 10)")
    await expect(page.locator("#days tbody tr").first).to_contain_text("50,0 % (2 из 4)")
    robot, answered = 5 + 7 + 4 + 8 + 6 + 9 + 1, sum(sum(day) for day in PAST_WEEK) + 2
    await expect(page.locator("#automation-numbers")).to_have_text(f"{robot} из {answered}")
    await page.set_viewport_size({"width": 1280, "height": 1640})  # tiles, the rate, the trend, the days
    await doc_screenshot(page, "stats")
    assert page.js_errors == [], page.js_errors
