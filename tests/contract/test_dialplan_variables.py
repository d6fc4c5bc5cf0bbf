"""The IVR_* variables of dialplans/*.conf against their one declaration (crm_bridge.contract.dialplan).

Both directions: every IVR_* the dialplan reads is set by the dialplan or by the service; every
variable the service sets is read by the dialplan or declared for another reader (the AMI
tracker, a later script, the admin's CRM). And the service names them only through ``Var``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from crm_bridge.contract.dialplan import IVR_CONTEXTS, TRACKED, VARIABLES, Side, Var
from crm_bridge.contract.outcomes import DIALPLAN_REASONS

ROOT = Path(__file__).resolve().parents[2]
DIALPLANS = sorted((ROOT / "dialplans").glob("*.conf"))
READ = re.compile(r"\$\{_{0,2}(IVR_[A-Z0-9_]+)\}")
SET = re.compile(r"\bSet\(_{0,2}(IVR_[A-Z0-9_]+)=")
GLOBAL = re.compile(r"^_{0,2}(IVR_[A-Z0-9_]+)\s*=")


def _dialplan() -> tuple[set[str], set[str]]:
    """(read, set) IVR_* names in the configs, comments excluded."""
    read: set[str] = set()
    written: set[str] = set()
    for path in DIALPLANS:
        section = None
        for line in path.read_text(encoding="utf-8").splitlines():
            code = line.split(";", 1)[0].strip()
            if code.startswith("["):
                section = code.strip("[]")
                continue
            read |= set(READ.findall(code))
            written |= set(SET.findall(code))
            if section == "globals" and (m := GLOBAL.match(code)):
                written.add(m.group(1))
    return read, written


def _service_sets() -> set[Var]:
    """``Var`` members named in the service's modules that set channel variables."""
    named: set[Var] = set()
    for path in (ROOT / "ivr").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "set_variable" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Var":
                named.add(Var[node.attr])
    return named


def test_the_configs_exist():
    assert {p.name for p in DIALPLANS} >= {"extensions_ivr.conf", "queues_ivr.conf", "manager_ivr.conf"}


def test_every_variable_the_dialplan_reads_is_set_by_the_dialplan_or_the_service():
    read, written = _dialplan()
    assert read, "the parser found no ${IVR_*} at all"
    undeclared = read - set(VARIABLES)
    assert not undeclared, f"read by the dialplan but not declared: {sorted(undeclared)}"
    for name in read:
        use = VARIABLES[Var(name)]
        assert use.set_by & {Side.DIALPLAN, Side.SERVICE}, name
        if use.set_by == {Side.DIALPLAN}:
            assert name in written, f"{name} is read, declared as set by the dialplan, but never set there"


def test_the_declaration_says_what_the_dialplan_does():
    read, written = _dialplan()
    for var, use in VARIABLES.items():
        assert (Side.DIALPLAN in use.read_by) == (var in read), f"{var}: read by the dialplan?"
        assert (Side.DIALPLAN in use.set_by) == (var in written), f"{var}: set by the dialplan?"


def test_every_variable_the_service_sets_has_a_reader():
    sets = _service_sets()
    declared = {v for v, use in VARIABLES.items() if Side.SERVICE in use.set_by}
    assert sets == declared, "the service sets exactly the variables declared as set by it"
    read, _ = _dialplan()
    for var in sets:
        others = VARIABLES[var].read_by - {Side.DIALPLAN}
        assert var in read or others, f"{var} is set by the service but nobody reads it"


def test_the_tracker_reads_what_the_ami_filter_lets_through():
    # manager_ivr.conf drops every VarSet whose name does not start with [_[_]]IVR_.
    assert all(v.startswith("IVR_") for v in TRACKED)
    assert {Var.RESULT, Var.ORDER_ID, Var.CUSTOMER_ID, Var.CALLBACK, Var.RECORDING} <= TRACKED


def test_the_service_names_channel_variables_only_through_the_declaration():
    """A literal "IVR_…" string in the service's code is a variable the contract does not know.
    Settings' own environment variables (IVR_<SECTION>__<KEY>, IVR_CONFIG…) are not channel variables."""
    settings = re.compile(r"^IVR_(CONFIG|LOCAL_CONFIG|[A-Z_]+__[A-Z_]+|)$")
    offenders = []
    for package in ("ivr", "crm_bridge"):
        for path in (ROOT / package).rglob("*.py"):
            if path.parent.name == "contract":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                          if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and n.body and isinstance(n.body[0], ast.Expr)}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                        and node.value.startswith("IVR_") and not settings.match(node.value)):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value}")
    assert not offenders, offenders


def test_the_dialplans_own_reasons_and_contexts_are_the_declared_ones():
    """The tracker trusts IVR_REASON values in DIALPLAN_REASONS and channels in IVR_CONTEXTS: both
    must be what extensions_ivr.conf really says."""
    text = (ROOT / "dialplans" / "extensions_ivr.conf").read_text(encoding="utf-8")
    code = "\n".join(line.split(";", 1)[0] for line in text.splitlines())
    contexts = set(re.findall(r"^\[([a-z0-9-]+)\]", code, re.M)) - {"globals"}
    assert contexts == IVR_CONTEXTS
    reason_sets = re.findall(r"Set\(IVR_REASON=(.+)\)", code)
    dialplan_words = {w for value in reason_sets for w in re.findall(r"[a-z_]{3,}", value)}
    assert set(DIALPLAN_REASONS) <= dialplan_words, reason_sets
    assert "agi_" not in code.replace("IVR_AGI_BASE", "")  # no more agi_<AGISTATUS> reasons
