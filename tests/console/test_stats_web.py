"""/stats, /api/v1/stats and /api/v1/stats.csv over real HTTP on the known day, both backends.

The JSON and CSV tests build the web app themselves and use the bearer token (machine clients);
the page and the session tests sign in for real through tests/console/conftest.py
(``console_client``, ``login``; users op1 / sup1 / adm1).
"""

from __future__ import annotations

import csv
import io
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crm_bridge.stats import AUTOMATION_DEFINITION
from ivr.web.api import build_web_app
from ivr.web.console.deps import ConsoleDeps
from ivr.web.console.stats_pages import hbar_chart, hour_chart, parse_period
from tests.console.conftest import PASSWORD, login
from tests.console.test_stats import EXPECTED_FUNNEL, EXPECTED_HOURS, EXPECTED_OUTCOMES, TZ, seed_day

TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = "from=2026-11-20&to=2026-11-20"



@pytest.fixture
async def client(store):
    await seed_day(store)
    app = build_web_app(store, api_token=TOKEN, console=ConsoleDeps(store=store, cookie_secure=False, timezone=TZ))
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


EXPECTED_JSON_NUMBERS = {
    "service_level_seconds": 20,
    "calls": {"total": 10, "known_customer": 9, "by_outcome": dict(EXPECTED_OUTCOMES)},
    "queue": {
        "entered": 5,
        "answered": 2,
        "abandoned": 2,
        "abandon_rate": 0.4,
        "answered_within_service_level": 1,
        "service_level": 0.2,
        "wait_seconds": {
            "answered": {"count": 2, "average": 15.0, "p90": 25.0},
            "abandoned": {"count": 2, "average": 26.0, "p90": 40.0},
            "all": {"count": 5, "average": 28.4, "p90": 60.0},
        },
        "avg_talk_seconds": 90.0,
    },
    "orders": {
        "ivr": 4,
        "ivr_amount": "2620.00",
        "operator_from_calls": 1,
        "from_calls": 5,
        "ivr_share": 0.8,
        "ivr_per_known_customer_call": 0.4444,
    },
    "automation": {
        "rate": 0.4,
        "robot_finished": 4,
        "robot_answered": 10,
        "robot_refused": 0,
        "finished_by_outcome": {"after_hours": 0, "callback_requested": 0, "order_placed": 4},
        "definition": AUTOMATION_DEFINITION,
    },
    "operators": [
        {"interface": "PJSIP/101", "name": "Анна", "calls_answered": 1, "avg_talk_seconds": 120.0,
         "avg_wait_seconds": 5.0, "orders": 1},
        {"interface": "PJSIP/102", "name": "Борис", "calls_answered": 1, "avg_talk_seconds": 60.0,
         "avg_wait_seconds": 25.0, "orders": 0},
    ],
    "funnel": [
        {"stage": stage, "label": label, "count": count, "share_of_previous": share}
        for (stage, count, share), label in zip(
            EXPECTED_FUNNEL,
            ("Звонки", "Приветствие и меню", "Выбор в меню", "Оформление заказа", "Заказ оформлен"),
            strict=True,
        )
    ],
    "calls_per_hour": list(EXPECTED_HOURS),
    "days": [
        {"day": "2026-11-20", "calls": 10, "robot_answered": 10, "robot_finished": 4, "automation_rate": 0.4,
         "operator_answered": 2, "operator_share": 0.2, "queued": 5, "answered_within_service_level": 1,
         "service_level": 0.2},
    ],
}


def assert_error(body, error_id: str) -> None:
    assert body["error"]["id"] == error_id
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_json_has_every_number(client):
    response = await client.get(f"/api/v1/stats?{DAY}", headers=AUTH)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["period"] == {
        "from": "2026-11-20", "to": "2026-11-20",
        "start": "2026-11-20T00:00:00+03:00", "end": "2026-11-21T00:00:00+03:00", "timezone": TZ,
    }
    assert {k: v for k, v in body.items() if k != "period"} == EXPECTED_JSON_NUMBERS


async def test_json_accepts_iso_datetimes_and_defaults(client):
    day = await (await client.get(f"/api/v1/stats?{DAY}", headers=AUTH)).json()
    # Same day as datetimes (to is exclusive); a naive datetime is Moscow time; "Z" is UTC.
    for query in (
        "from=" + quote("2026-11-20T00:00:00+03:00") + "&to=" + quote("2026-11-21T00:00:00+03:00"),
        "from=2026-11-20T00:00&to=2026-11-21T00:00",
        "from=2026-11-19T21:00:00Z&to=2026-11-20T21:00:00Z",
    ):
        body = await (await client.get(f"/api/v1/stats?{query}", headers=AUTH)).json()
        assert {k: v for k, v in body.items() if k != "period"} == EXPECTED_JSON_NUMBERS, query
        assert (body["period"]["start"], body["period"]["end"]) == (day["period"]["start"], day["period"]["end"])
    # A single bound means that one day; a datetime period can cut the day short.
    only_from = await (await client.get("/api/v1/stats?from=2026-11-20", headers=AUTH)).json()
    assert only_from["calls"] == day["calls"] and only_from["period"]["to"] == "2026-11-20"
    morning = await (await client.get("/api/v1/stats?from=2026-11-20T00:00&to=2026-11-20T12:00",
                                      headers=AUTH)).json()
    assert morning["calls"]["total"] == 3 and morning["orders"]["ivr"] == 3
    assert morning["period"]["from"] == "2026-11-20T00-00" and morning["period"]["to"] == "2026-11-20T12-00"
    # Several days: the edges of the known day come in.
    week = await (await client.get("/api/v1/stats?from=2026-11-19&to=2026-11-21", headers=AUTH)).json()
    assert week["calls"]["total"] == 12 and week["orders"]["from_calls"] == 7
    # No dates at all: today (nothing seeded there).
    today = await (await client.get("/api/v1/stats", headers=AUTH)).json()
    assert today["calls"]["total"] == 0 and today["queue"]["abandon_rate"] is None
    assert today["orders"]["ivr_amount"] == "0.00" and today["period"]["from"] == today["period"]["to"]


@pytest.mark.parametrize("path", ["/api/v1/stats", "/api/v1/stats.csv"])
@pytest.mark.parametrize(
    "query",
    ["from=2026-13-01&to=2026-11-20", "from=20.11.2026", "to=yesterday", "from=2026-11-21&to=2026-11-20",
     "from=2026-11-20T12:00&to=2026-11-20T11:00", "from=2020-01-01&to=2026-11-20"],
)
async def test_bad_period_is_400(client, path, query):
    response = await client.get(f"{path}?{query}", headers=AUTH)
    assert response.status == 400
    assert_error(await response.json(), "bad_query")


async def test_api_needs_a_token_or_a_session(client):
    for path in (f"/api/v1/stats?{DAY}", f"/api/v1/stats.csv?{DAY}"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status == 401


def read_csv(text: str) -> tuple[dict[str, str], list[list[str]], list[list[str]], list[list[str]]]:
    sections: list[list[list[str]]] = [[]]
    for row in csv.reader(io.StringIO(text), delimiter=";"):
        if not row:
            sections.append([])
        else:
            sections[-1].append(row)
    metrics, operators, hours, days = sections
    assert metrics[0] == ["Показатель", "Значение", "Ключ"]  # Russian name, value, stable machine key
    return {key: value for _, value, key in metrics[1:]}, operators, hours, days


def _number(cell: str):
    return None if cell == "" else float(cell.replace(",", "."))


async def test_csv_matches_the_json(client):
    body = await (await client.get(f"/api/v1/stats?{DAY}", headers=AUTH)).json()
    response = await client.get(f"/api/v1/stats.csv?{DAY}", headers=AUTH)
    assert response.status == 200
    assert response.content_type == "text/csv" and response.charset == "utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="ivr-stats_2026-11-20_2026-11-20.csv"'
    raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    metrics, operators, hours, days = read_csv(raw.decode("utf-8-sig"))

    assert metrics["period.from"] == "2026-11-20" and metrics["period.timezone"] == TZ
    assert metrics["calls.total"] == "10" and metrics["calls.known_customer"] == "9"
    for outcome, count in EXPECTED_OUTCOMES:
        assert metrics[f"calls.by_outcome.{outcome}"] == str(count)
    assert metrics["orders.ivr_amount"] == "2620,00"  # decimal comma: a number in a Russian Excel
    assert metrics["orders.ivr_share"] == "0,8"
    # The honest rate with its numerator, denominator and definition, each on its own row.
    assert (metrics["automation.rate"], metrics["automation.robot_finished"], metrics["automation.robot_answered"]) == (
        "0,4", "4", "10")
    assert metrics["automation.definition"] == AUTOMATION_DEFINITION
    assert metrics["queue.wait_seconds.all.p90"] == "60,0"
    assert metrics["funnel.calls.share_of_previous"] == ""  # None: an empty cell
    # Every number of the JSON is in the CSV, under its dotted key.
    flat: dict[str, object] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        else:
            flat[prefix] = value

    walk("", {k: v for k, v in body.items() if k not in ("operators", "funnel", "calls_per_hour", "days")})
    for stage in body["funnel"]:
        walk(f"funnel.{stage['stage']}", {"count": stage["count"], "share_of_previous": stage["share_of_previous"]})
    assert set(metrics) == set(flat)
    for key, value in flat.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert _number(metrics[key]) == value, key
        elif value is None:
            assert metrics[key] == "", key
        else:
            assert metrics[key].replace(",", ".") == str(value).replace(",", "."), key

    assert operators[0] == ["Интерфейс оператора", "Оператор", "Принято звонков", "Разговор, среднее, с",
                            "Ожидание клиентов, среднее, с", "Заказов"]
    assert operators[1:] == [["PJSIP/101", "Анна", "1", "120,0", "5,0", "1"],
                             ["PJSIP/102", "Борис", "1", "60,0", "25,0", "0"]]
    assert hours[0] == ["Час", "Звонков"]
    assert [[f"{h:02d}", str(c)] for h, c in enumerate(body["calls_per_hour"])] == hours[1:]
    assert [int(c) for _, c in hours[1:]] == list(EXPECTED_HOURS)
    assert days == [["День", "Звонков", "Принял робот", "Робот закончил сам", "Автоматизация", "Ответил оператор",
                     "Доля ответов оператора", "Вошли в очередь", "Ответ в пределах уровня сервиса",
                     "Уровень сервиса"],
                    ["2026-11-20", "10", "10", "4", "0,4", "2", "0,2", "5", "1", "0,2"]]


async def test_csv_filename_for_a_datetime_period(client):
    response = await client.get("/api/v1/stats.csv?from=2026-11-20T08:00&to=2026-11-20T20:30", headers=AUTH)
    assert response.status == 200
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="ivr-stats_2026-11-20T08-00_2026-11-20T20-30.csv"')


def test_period_parsing_in_the_console_zone():
    from datetime import date

    p = parse_period({"from": "2026-11-20", "to": "2026-11-22"}, TZ, date(2026, 11, 27))
    assert (p.start.isoformat(), p.end.isoformat()) == ("2026-11-20T00:00:00+03:00", "2026-11-23T00:00:00+03:00")
    assert (p.first_day, p.last_day) == (date(2026, 11, 20), date(2026, 11, 22))
    p = parse_period({}, TZ, date(2026, 11, 27))
    assert (p.label_from, p.label_to, p.start.isoformat()) == ("2026-11-27", "2026-11-27", "2026-11-27T00:00:00+03:00")
    p = parse_period({"from": "2026-11-20T08:00", "to": "2026-11-21T00:00"}, TZ, date(2026, 11, 27))
    assert (p.first_day, p.last_day) == (date(2026, 11, 20), date(2026, 11, 20))  # "to" is exclusive


def test_charts_are_plain_inline_svg():
    svg = str(hour_chart(tuple(EXPECTED_HOURS)))
    assert svg.startswith("<svg") and svg.endswith("</svg>") and svg.count('<rect class="bar"') == 24
    assert "<title>13:00–13:59 — 2</title>" in svg and "http://www.w3.org/2000/svg" in svg
    assert "<script" not in svg and "href" not in svg
    bars = str(hbar_chart([("<b>x</b>", 3, "3 · 50 %"), ("y", 0, "0")], "t"))
    assert "&lt;b&gt;x&lt;/b&gt;" in bars and "<b>" not in bars  # labels are escaped
    assert bars.count('<rect class="bar"') == 2
    assert "нет данных" in str(hbar_chart([], "t"))


# --- the page and sessions (tests/console/conftest.py: console_client, login) ----------------------------


async def test_page_for_a_supervisor(store, console_client):
    await seed_day(store)
    await login(console_client, "sup1", PASSWORD)
    response = await console_client.get(f"/stats?{DAY}")
    assert response.status == 200
    html = await response.text()
    assert html.count("<svg") == 4  # by day, per hour, outcomes, funnel: drawn in the page
    assert '<script src="http' not in html and "cdn" not in html.lower()
    for needle in (
        "Статистика звонков", 'value="2026-11-20"',
        "80,0 %",  # IVR order share
        # The honest automation rate, its numbers and its definition.
        'Робот закончил сам <span id="automation-rate">40,0 %</span>', "4 из 10", AUTOMATION_DEFINITION,
        '<polyline class="series series-automation_rate"', "20 ноября 2026",
        "44,4 %",  # IVR orders per known-customer call
        "40,0 %",  # abandon rate
        "20,0 %",  # service level
        "0:28 / 1:00",  # wait of all queued calls: average / p90
        "1:30",  # average talk
        "2\u00a0620,00\u00a0₽", "Анна", "PJSIP/101", "Борис", "0:25",
        "Сбросил в очереди", "77,8 %", "71,4 %",  # funnel shares
        "/api/v1/stats.csv?from=2026-11-20&amp;to=2026-11-20",
        "<title>13:00–13:59 — 2</title>",
    ):
        assert needle in html, needle


async def test_page_defaults_and_presets(console_client):
    await login(console_client, "adm1", PASSWORD)
    response = await console_client.get("/stats")
    assert response.status == 200
    html = await response.text()
    for preset in ("Сегодня", "Вчера", "7 дней", "30 дней"):
        assert preset in html
    assert "Звонков за период нет" in html and "—" in html and html.count("<svg") == 4


async def test_page_bad_period_is_400_with_today(console_client):
    await login(console_client, "adm1", PASSWORD)
    response = await console_client.get("/stats?from=2026-11-21&to=2026-11-20")
    assert response.status == 400
    assert "Неверный период" in await response.text()


async def test_operator_is_refused(store, console_client):
    await seed_day(store)
    await login(console_client, "op1", PASSWORD)
    assert (await console_client.get(f"/stats?{DAY}")).status == 403
    for path in (f"/api/v1/stats?{DAY}", f"/api/v1/stats.csv?{DAY}"):
        response = await console_client.get(path)
        assert response.status == 403
        assert_error(await response.json(), "forbidden")


async def test_no_session_goes_to_login(console_client):
    response = await console_client.get(f"/stats?{DAY}", allow_redirects=False)
    assert response.status in (302, 303) and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("username", ["sup1", "adm1"])
async def test_session_json_and_csv(store, console_client, username):
    await seed_day(store)
    await login(console_client, username, PASSWORD)
    response = await console_client.get(f"/api/v1/stats?{DAY}")
    assert response.status == 200
    body = await response.json()
    assert {k: v for k, v in body.items() if k != "period"} == EXPECTED_JSON_NUMBERS
    response = await console_client.get(f"/api/v1/stats.csv?{DAY}")
    assert response.status == 200 and (await response.read()).startswith(b"\xef\xbb\xbf")
