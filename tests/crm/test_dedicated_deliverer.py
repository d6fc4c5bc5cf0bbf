"""`crm.deliver = false`: the calls' process only enqueues; `ivr crm deliver` beside it delivers."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import pytest

from crm_bridge.demo import load_demo_data
from ivr.app import Seams, start_service
from tests.calls.harness import CallHarness, database_url, harness_settings, wait_for
from tests.cli.conftest import clean_environ
from tests.crm.test_crash import IVR


@pytest.mark.timeout(120)
async def test_a_call_is_enqueued_by_serve_and_delivered_by_the_dedicated_process(store, prompts_dir, webhook,
                                                                                tmp_path) -> None:
    await load_demo_data(store.sessions)
    url = database_url(store)
    crm = {"targets": ["webhook"], "deliver": False, "poll_interval": 0.1}
    hook = {"url": webhook.url, "secret": webhook.secret}
    settings = harness_settings(url, prompts_dir, crm=crm, crm_webhook=hook)
    service = await start_service(settings, migrate=False, seams=Seams(strict_events=True))
    harness = CallHarness(service=service, store=service.store, prompts_dir=prompts_dir)
    try:
        fake = await harness.call("+79161234567", ["1"])
        call_id = fake.channel_vars["CHANNEL(linkedid)"]
        assert harness.service.outbox is not None
        outbox = harness.service.outbox.store

        async def three() -> bool:  # the call's last records are written just after the socket closes
            return len(await outbox.items()) == 3

        await wait_for(three, timeout=10)
        items = await outbox.items()
        assert [i.kind for i in items] == ["call.started", "order.created", "call.ended"]
        assert {i.state for i in items} == {"pending"} and webhook.received == []  # nobody delivers here

        log = (tmp_path / "deliver.log").open("w")
        env = clean_environ({"IVR_DATABASE__URL": url, "IVR_CRM__TARGETS": "webhook", "IVR_CRM__POLL_INTERVAL": "0.1",
                             "IVR_CRM_WEBHOOK__URL": webhook.url, "IVR_CRM_WEBHOOK__SECRET": webhook.secret})
        deliverer = await asyncio.create_subprocess_exec(str(IVR), "crm", "deliver", env=env, stdout=log,
                                                         stderr=subprocess.STDOUT)
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while len(webhook.received) < 3:
                assert deliverer.returncode is None, (tmp_path / "deliver.log").read_text()
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            deliverer.send_signal(signal.SIGTERM)
            assert await deliverer.wait() == 0
        finally:
            if deliverer.returncode is None:
                deliverer.kill()
                await deliverer.wait()
            log.close()
        assert [(e["call_id"], e["kind"]) for e in webhook.received] == [
            (call_id, "call.started"), (call_id, "order.created"), (call_id, "call.ended")]
        assert webhook.secret not in (tmp_path / "deliver.log").read_text()
    finally:
        await harness.stop()
