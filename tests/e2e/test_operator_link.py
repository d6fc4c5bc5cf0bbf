"""The operator's page never claims a pop can come when it cannot (issue 10, point 2): the link
indicator follows AMI going down and coming back and the service going away; a dropped feed is
reopened and resubscribed; a card that pops while op1 works in another tab rings, is announced
(aria-live) and shows a browser notification (``window.Notification`` and ``AudioContext`` are
stubbed by an init script that records what the page asked of them)."""

from __future__ import annotations

from aiohttp import WSCloseCode
from playwright.async_api import expect

from ivr.web.operator_api import FEEDS_KEY
from tests.e2e.conftest import e2e, needs_chromium, new_page, screenshot, sign_in, wait_for
from tests.e2e.test_operator_screen_pop import LINKEDID, split_trace

pytestmark = [e2e, needs_chromium]

# Records instead of showing / playing: the page's code paths run as in a real browser.
STUBS = """
window.__notes = [];
window.__tones = 0;
class RecordingNotification {
  constructor(title, options) { window.__notes.push({ title, body: (options || {}).body, tag: (options || {}).tag }); }
  close() {}
}
RecordingNotification.permission = "default";
RecordingNotification.requestPermission = async () => (RecordingNotification.permission = "granted");
window.Notification = RecordingNotification;
class RecordingAudio {
  constructor() { this.state = "running"; this.currentTime = 0; this.destination = {}; }
  resume() { return Promise.resolve(); }
  createGain() { return { gain: {}, connect: (to) => to }; }
  createOscillator() {
    window.__tones += 1;
    return { frequency: {}, connect: (to) => to, start() {}, stop() {} };
  }
}
window.AudioContext = RecordingAudio;
"""


async def test_the_link_indicator_follows_ami_and_the_service(browser, console):
    page = await new_page(browser, console)
    await sign_in(page, "op1")
    link = page.locator("#link-state")
    await expect(link).to_have_attribute("data-state", "live")
    await expect(link).to_have_text("на связи")

    # Asterisk goes away: the page says so at once (the feed pushes the change), with the time
    await console.fake_ami.stop()
    await expect(link).to_have_attribute("data-state", "ami_down")
    await expect(link).to_contain_text("AMI недоступен с ")
    await expect(page.locator("#call-card")).to_have_class("card stale")
    await screenshot(page, console, "b-operator-ami-down")

    # ... and comes back on the same port: the client logs in again, the page is live again
    await console.fake_ami.start()
    await console.fake_ami.wait_for_logins(2, timeout=10)
    await expect(link).to_have_attribute("data-state", "live")
    await expect(page.locator("#call-card")).to_have_class("card")

    # the feed drops without the service stopping (a proxy restarted): the page reopens it,
    # resubscribes, and the next pop arrives
    (old,) = console.service.web_app[FEEDS_KEY]
    await old.close(code=WSCloseCode.SERVICE_RESTART, message=b"test")
    await wait_for(lambda: [ws is not old for ws in console.service.web_app[FEEDS_KEY]] == [True],
                   what="the page's new feed")
    await expect(link).to_have_attribute("data-state", "live")
    await console.call("+79161234567", ["0"], uniqueid=LINKEDID)
    ringing_part, answer_part, _ = split_trace()
    await console.fake_ami.push(ringing_part)
    await expect(page.locator("#call-state")).to_have_text("Звонит")
    await console.fake_ami.push(answer_part)
    await expect(page.locator("#call-state")).to_have_text("Разговор")

    # the service stops: the page no longer says "на связи"
    await console.service.stop()
    await expect(link).to_have_attribute("data-state", "reconnecting")
    await expect(link).to_have_text("переподключение…")
    assert page.js_errors == [], page.js_errors


async def test_a_pop_while_op1_works_in_another_tab_rings_announces_and_notifies(browser, console):
    page = await new_page(browser, console)
    await page.context.add_init_script(STUBS)
    await sign_in(page, "op1")
    await expect(page.locator("#link-state")).to_have_attribute("data-state", "live")
    # notifications need the person's click once
    await page.click("#alerts-enable")
    await expect(page.locator("#alerts-status")).to_have_text("уведомления включены")

    # op1 switches to another tab; Playwright's focus emulation is turned off for the operator page
    # so it sees what a browser tells a background tab (document.hasFocus() false)
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Emulation.setFocusEmulationEnabled", {"enabled": False})
    other = await page.context.new_page()
    await other.goto("/customers")
    await other.bring_to_front()
    assert await page.evaluate("document.hasFocus()") is False

    await console.call("+79161234567", ["0"], uniqueid=LINKEDID)
    ringing_part, answer_part, _ = split_trace()
    await console.fake_ami.push(ringing_part)
    await expect(page.locator("#call-state")).to_have_text("Звонит")
    announce = page.locator("#call-announce")
    await expect(announce).to_have_attribute("aria-live", "polite")
    await expect(announce).to_have_text("Звонок: Иванов Алексей Сергеевич. Номер +79161234567. "
                                        "клиент попросил оператора")
    notes = await page.evaluate("window.__notes")
    assert notes == [{"title": "Звонок: Иванов Алексей Сергеевич",
                      "body": "Номер +79161234567. клиент попросил оператора", "tag": f"ivr-call-{LINKEDID}"}]
    assert await page.evaluate("window.__tones") == 4  # one ring: four short tones

    # answering is the same call: no second ring, no second notification
    await console.fake_ami.push(answer_part)
    await expect(page.locator("#call-state")).to_have_text("Разговор")
    assert len(await page.evaluate("window.__notes")) == 1
    assert await page.evaluate("window.__tones") == 4
    assert page.js_errors == [], page.js_errors
