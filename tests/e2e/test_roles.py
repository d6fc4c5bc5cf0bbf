"""Sign-in per role through the real form, the navigation each role sees, sign-out, and the 403 page
where a role may not go."""

from __future__ import annotations

import pytest

from ivr.web.console.auth import COOKIE
from tests.e2e.conftest import HOMES, NAV, e2e, nav_links, needs_chromium, new_page, screenshot, sign_in

pytestmark = [e2e, needs_chromium]


async def test_each_role_signs_in_sees_its_sections_and_signs_out(browser, console):
    for username in ("op1", "sup1", "adm1"):
        page = await new_page(browser, console)
        # a page behind the sign-in sends the anonymous browser to the form
        await page.goto(HOMES[username])
        assert page.url.startswith(console.url("/login?next="))
        await sign_in(page, username)
        assert await nav_links(page) == NAV[username], username
        role = {"op1": "Оператор", "sup1": "Старший смены", "adm1": "Администратор"}[username]  # in Russian
        assert (await page.locator("header .who").inner_text()).endswith(f"· {role}")
        if username == "adm1":
            await screenshot(page, console, "a-admin-home")
        (cookie,) = [c for c in await page.context.cookies() if c["name"] == COOKIE]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

        async with page.expect_navigation():
            await page.click("header form.logout button[type=submit]")
        assert page.url == console.url("/login")
        assert await page.locator("header nav").count() == 0
        assert COOKIE not in [c["name"] for c in await page.context.cookies()]

        # the old cookie, put back by hand, no longer opens anything
        await page.context.add_cookies([{k: cookie[k] for k in ("name", "value", "domain", "path")}])
        response = await page.goto(HOMES[username])
        assert page.url.startswith(console.url("/login?next=")), page.url
        assert response is not None and response.ok
        assert page.js_errors == [], page.js_errors
        await page.context.close()


@pytest.mark.parametrize(("username", "paths"), [
    ("op1", ["/stats", "/wallboard", "/admin/users", "/admin/crm"]),
    ("sup1", ["/admin/users", "/admin/crm"]),
])
async def test_refused_where_the_role_forbids(browser, console, username, paths):
    page = await new_page(browser, console)
    await sign_in(page, username)
    for path in paths:
        response = await page.goto(path)
        assert response is not None and response.status == 403, (username, path)
        assert await page.locator("main h1").inner_text() == "Доступ запрещён"
        assert "недоступна для вашей роли" in await page.locator("main").inner_text()
        assert page.url == console.url(path)  # no redirect: the refusal is on the asked page
    await screenshot(page, console, f"e-{username}-forbidden")
    # and the allowed pages still open
    response = await page.goto(HOMES[username])
    assert response is not None and response.status == 200
    await page.context.close()
