"""Two services (ivr.app.start_service) on one PostgreSQL: the IVR part of a call runs on the standby,
Asterisk's queue events reach only the AMI owner, and the operator's WebSocket on the standby still gets
the whole card (and the owner's board gets the standby's IVR path)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from crm_bridge.db import create_engine, session_factory
from crm_bridge.demo import load_demo_data
from ivr.app import start_service
from ivr.settings import Settings, default_settings
from tests.ami_tracker.traces import CALL_IDS, TRACES
from tests.cluster.conftest import wait_until
from tests.fakeami import FakeAmi, load_trace_events
from tests.fakeasterisk import FakeAsterisk
from tests.feeds import next_card

TOKEN = "t"
OPERATOR = "Local/101@operator-agent/n"  # the queue member interface in the traces


def settings(tmp_path, pg_url: str, ami: FakeAmi) -> Settings:
    return default_settings().replace(
        agi={"port": 0},
        web={"port": 0, "api_token": TOKEN},
        database={"url": pg_url},
        prompts={"dir": str(tmp_path / "prompts"), "warm_at_start": False},
        recordings={"dir": str(tmp_path / "monitor")},
        hours={"open": "00:00", "close": "23:59:59.999999", "days": [1, 2, 3, 4, 5, 6, 7], "holidays": []},
        operators={"names": {OPERATOR: "Анна Смирнова"}},
        ami={"port": ami.port, "username": ami.username, "secret": ami.secret, "reconnect_min": 0.05},
        flow={"max_silence": 10.0},  # a loaded machine's first syntheses must not hand the caller over
    )


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_the_operator_on_the_standby_gets_the_card_of_a_call_the_owner_saw_ringing(tmp_path, pg_url):
    engine = create_engine(pg_url, pool_size=1)
    try:
        await load_demo_data(session_factory(engine))
    finally:
        await engine.dispose()
    async with FakeAmi() as ami:
        owner = await start_service(settings(tmp_path, pg_url, ami))
        standby = None
        try:
            await wait_until(lambda: owner.health()["ami"]["status"] == "connected", what="owner on AMI")
            standby = await start_service(settings(tmp_path, pg_url, ami), migrate=False)
            await wait_until(lambda: standby.ami_ownership.refusals >= 1, what="standby refused the lock")
            await asyncio.wait_for(standby.fanout.wait_listening(), 10)
            assert standby.health()["worker"]["ami"] == "standby" and ami.logins == 1

            call_id = CALL_IDS["menu_operator_senddtmf"]
            caller = FakeAsterisk(inputs=["0"])  # the caller asks for an operator on the standby
            await caller.connect("127.0.0.1", standby.agi.port, caller_id="+79161234567", uniqueid=call_id)
            assert await caller.wait_closed(60) and caller.variables["IVR_RESULT"] == "operator"

            url = f"http://127.0.0.1:{standby.web_port}/api/v1/operators/101/feed?token={TOKEN}"
            async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
                assert (await next_card(ws, 10))["state"] == "free"
                await ami.push(load_trace_events(TRACES / "menu_operator_senddtmf.txt"))  # only the owner hears it
                ringing = (await next_card(ws, 10))
            assert ringing["state"] == "ringing" and ringing["operator_name"] == "Анна Смирнова"
            assert ringing["customer"]["customer_id"] == "C001"
            assert ringing["call"]["ivr_reason"] == "caller_request"
            heard = [p["text"] for p in ringing["ivr_path"] if p["kind"] == "prompt.played"]
            assert heard and heard[0].startswith("Здравствуйте, Алексей Сергеевич")  # the standby's own path

            # The other way: the owner's board has the IVR path that ran on the standby.
            await wait_until(lambda: (owner.board.current("101") or {}).get("ivr_path"), what="owner's card")
            owner_heard = [p["text"] for p in owner.board.current("101")["ivr_path"] if p["kind"] == "prompt.played"]
            assert owner_heard == heard
        finally:
            if standby is not None:
                await standby.stop()
            await owner.stop()
