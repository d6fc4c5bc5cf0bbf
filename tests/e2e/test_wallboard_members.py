"""The wallboard in the queue's own words (issue 10, point 7): an operator AMI has said nothing of is
"неизвестно", not "свободен"; then what app_queue reports (the captured QueueMemberStatus and
QueueMemberPause events): free, in a call, paused with the reason; and the queue lists the
customer by name."""

from __future__ import annotations

from playwright.async_api import expect

from tests.e2e.conftest import AMI_TRACES, OPERATOR_NAME, e2e, needs_chromium, new_page, screenshot, sign_in
from tests.e2e.test_operator_screen_pop import LINKEDID, split_trace
from tests.fakeami import load_trace_events

pytestmark = [e2e, needs_chromium]


def member_events(trace: str, event: str) -> list:
    return [e for e in load_trace_events(AMI_TRACES / trace) if e.get("Event") == event]


async def test_the_wallboard_shows_what_the_queue_says_of_each_operator(browser, console):
    page = await new_page(browser, console)
    await sign_in(page, "sup1")
    await page.goto("/wallboard")
    row = page.locator("#wb-operator-rows tr", has_text=OPERATOR_NAME)
    # the fake Asterisk's QueueStatus lists no member: nothing says op1 is free
    await expect(row.locator("td").nth(2)).to_have_text("неизвестно")

    status = member_events("menu_operator_senddtmf.txt", "QueueMemberStatus")
    free = next(e for e in status if e["Status"] == "1")
    await console.fake_ami.push([free])
    await expect(row.locator("td").nth(2)).to_have_text("свободен")

    (paused, *_) = member_events("actions.txt", "QueueMemberPause")
    assert (paused["Paused"], paused["PausedReason"]) == ("1", "lunch")
    await console.fake_ami.push([paused])
    await expect(row.locator("td").nth(2)).to_have_text("на паузе: lunch")
    await expect(page.locator("#wb-free")).to_have_text("0")

    # back from lunch (the same event, unpaused), a caller waits: the queue names her
    await console.fake_ami.push([{**paused, "Paused": "0", "PausedReason": ""}])
    await expect(row.locator("td").nth(2)).to_have_text("свободен")
    await console.call("+79161234567", ["0"], uniqueid=LINKEDID)
    ringing_part, answer_part, _ = split_trace()
    joined = next(i for i, e in enumerate(ringing_part) if e.get("Event") == "QueueCallerJoin")
    await console.fake_ami.push(ringing_part[: joined + 1])
    queue_row = page.locator("#wb-queue-rows tr").first
    await expect(queue_row).to_contain_text("Иванов Алексей Сергеевич")
    await expect(queue_row.locator("a[href='/customers/C001']")).to_be_visible()
    await screenshot(page, console, "d-wallboard-members")

    # op1's phone rings, then op1 talks: the call decides over the member's device state
    await console.fake_ami.push(ringing_part[joined + 1 :])
    await expect(row.locator("td").nth(2)).to_have_text("звонит")
    await console.fake_ami.push(answer_part)
    await expect(row.locator("td").nth(2)).to_have_text("разговаривает")
    assert page.js_errors == [], page.js_errors
