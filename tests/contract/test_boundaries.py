"""The contract is a leaf everyone may import: it imports nothing of ours, and sharing it does not
let ``crm_bridge`` reach into ``ivr`` or the pure flows into I/O."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OURS = ("ivr", "crm_bridge", "prompts")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _ours(names: set[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in OURS}


def test_the_contract_imports_nothing_else_of_ours():
    for path in (ROOT / "crm_bridge" / "contract").glob("*.py"):
        assert all(n.startswith("crm_bridge.contract") for n in _ours(_imports(path))), path.name


def test_the_store_never_imports_the_service():
    for path in (ROOT / "crm_bridge").rglob("*.py"):
        assert not any(n.split(".")[0] == "ivr" for n in _imports(path)), path


def test_the_pure_flows_import_only_each_other_and_the_contract():
    for path in (ROOT / "ivr" / "flows").glob("*.py"):
        allowed = ("ivr.flows", "crm_bridge.contract")
        assert all(n.startswith(allowed) for n in _ours(_imports(path))), path.name
