"""The pull from a CRM (issue 11, point 3): contacts, products and deals with their product rows
mapped into our store on a schedule, so the robot greets and reads back what the managers see
without ever asking the CRM during a call.

    source = Bitrix24Source(webhook_url)            # or AmoCrmSource(base_url, token)
    report = await SyncRunner(SyncStore(sessions, pipeline), source).run(full=False)  # [deals]: their deals
    print("\\n".join(report.summary()))

``records.py`` the mapped shapes, ``bitrix24.py``/``amocrm.py`` a CRM's pages and pure mapping,
``store.py`` a page written with its cursor in one transaction, ``runner.py`` one run,
``schedule.py`` runs on an interval, ``client.py`` pace, retries and the error tree.
"""

from crm_bridge.sync.amocrm import AmoCrmSource
from crm_bridge.sync.bitrix24 import Bitrix24Source
from crm_bridge.sync.client import Retrying, SyncError
from crm_bridge.sync.records import ENTITIES, Entity
from crm_bridge.sync.report import SyncIssue, SyncReport
from crm_bridge.sync.runner import SyncRunner
from crm_bridge.sync.schedule import SyncSchedule, SyncStatus
from crm_bridge.sync.store import CursorView, SyncStore

__all__ = [
    "ENTITIES",
    "AmoCrmSource",
    "Bitrix24Source",
    "CursorView",
    "Entity",
    "Retrying",
    "SyncError",
    "SyncIssue",
    "SyncReport",
    "SyncRunner",
    "SyncSchedule",
    "SyncStatus",
    "SyncStore",
]
