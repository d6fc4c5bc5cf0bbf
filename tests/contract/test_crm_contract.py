"""The CRM bridge's published words: the webhook's JSON Schema says exactly what the contract's event
kinds carry, and the README names every exported kind, outbox state and target."""

from __future__ import annotations

import json
from pathlib import Path

from crm_bridge.contract.crm import EXPORTED, OutboxState, TargetKind
from crm_bridge.contract.events import FIELDS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "crm_bridge" / "connectors" / "webhook.schema.json").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_schema_lists_the_exported_kinds_with_the_contracts_fields() -> None:
    assert SCHEMA["properties"]["kind"]["enum"] == [k.value for k in EXPORTED]
    described = {
        rule["if"]["properties"]["kind"]["const"]: set(rule["then"]["properties"]["data"]["properties"])
        for rule in SCHEMA["allOf"]
    }
    assert described == {k.value: set(FIELDS[k.value]) for k in EXPORTED}


def test_the_readme_names_every_kind_state_and_target() -> None:
    section = README[README.index("## CRM bridge"):]
    section = section[: section.index("\n## ", 1)]
    for word in [*EXPORTED, *OutboxState, *TargetKind]:
        assert f"`{word}`" in section, word
