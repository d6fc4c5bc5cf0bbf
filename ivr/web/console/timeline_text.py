"""One timeline event in words: the one renderer behind the call page, the customer's timeline and
the operator's screen (whose live cards get each step's words from ``with_lines`` before they are
sent, so the browser draws what the server would).

Kinds and fields are those of ``crm_bridge.contract.events``; titles come from ``labels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crm_bridge.contract.events import EventKind
from ivr.web.console.labels import (
    HANGUP_LABELS,
    LOOKUP_STATUSES,
    ORDER_SOURCES,
    event_label,
    outcome_label,
    reason_text,
)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    total = int(round(float(seconds)))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def event_text(kind: str, data: Mapping[str, Any]) -> str:
    """The interesting part of an event's data, in words."""
    match kind:
        case EventKind.PROMPT_PLAYED:
            return str(data.get("text") or data.get("step") or "")
        case EventKind.DTMF_RECEIVED:
            if data.get("timed_out") and not data.get("digits"):
                return "ничего не нажато"
            return f"«{data.get('digits') or ''}»" + (" (время вышло)" if data.get("timed_out") else "")
        case EventKind.CALLER_IDENTIFIED:
            return LOOKUP_STATUSES.get(str(data.get("status")), str(data.get("status") or ""))
        case EventKind.OPERATOR_RINGING | EventKind.OPERATOR_NO_ANSWER | EventKind.OPERATOR_ANSWERED:
            who = str(data.get("operator_name") or data.get("operator_interface") or "")
            if kind == EventKind.OPERATOR_ANSWERED and data.get("hold_time") is not None:
                who += f", ждал {duration(data.get('hold_time'))}"
            return who
        case EventKind.QUEUE_ENTERED:
            position = f", позиция {data['position']}" if data.get("position") else ""
            return f"очередь {data.get('queue') or ''}{position}"
        case EventKind.QUEUE_ABANDONED:
            return f"ждал {duration(data.get('wait_seconds'))}"
        case EventKind.RECORDING_READY | EventKind.RECORDING_MISSING | EventKind.RECORDING_REFUSED:
            seconds = data.get("seconds")
            return Path(str(data.get("path") or "")).name + (f", {duration(seconds)}" if seconds is not None else "")
        case EventKind.CALL_ENDED:
            return "; ".join(b for b in (outcome_label(data.get("outcome")), reason_text(data.get("reason"))) if b)
        case EventKind.CALL_HUNGUP:
            who = HANGUP_LABELS.get(str(data.get("who")), data.get("who") or "")
            return outcome_label(data.get("outcome")) + (f", положил {who}" if who else "")
        case EventKind.CALL_ESCALATED | EventKind.CALLBACK_IMPOSSIBLE:
            return reason_text(data.get("reason"))
        case EventKind.STEP_FAILED:
            return "; ".join(b for b in (str(data.get("step") or ""), reason_text(data.get("reason"))) if b)
        case EventKind.ORDER_CREATED:
            late = " (стало известно после передачи оператору)" if data.get("after_handover") else ""
            return f"заказ {data.get('order_id') or ''}, счёт {data.get('invoice') or ''}{late}"
        case EventKind.ORDER_ALREADY_PLACED:
            text = f"в силе заказ {data.get('order_id') or ''}, оформленный ранее в звонке"
            asked = ", ".join(f"{line.get('sku')} × {line.get('quantity')}" for line in data.get("lines") or [])
            return text + (f"; клиент просил: {asked} (не оформлено)" if asked else "")
        case EventKind.ORDER_UNCERTAIN:
            return "база не ответила, оформлен ли заказ: проверьте заказы клиента, прежде чем вводить его снова"
        case EventKind.CALLBACK_CREATED:
            return f"до {data['due_at'][:16].replace('T', ' ')}" if data.get("due_at") else ""
        case EventKind.ORDER_PLACED:
            source = ORDER_SOURCES.get(data.get("source") or "", data.get("source"))
            text = f"{data.get('order_id')} на {data.get('total')} ₽, {source}"
            return text + (f", доставка {data['delivery_date']}" if data.get("delivery_date") else "")
        case EventKind.CALL_RECORDED:
            bits = [outcome_label(data.get("outcome")), reason_text(data.get("reason"))]
            if data.get("operator"):
                bits.append(f"оператор {data['operator']}")
            return "; ".join(b for b in bits if b)
    shown = {k: v for k, v in data.items() if v not in (None, "", [], {})}
    return ", ".join(f"{k}={v}" for k, v in list(shown.items())[:8])[:300]


def event_line(kind: str, data: Mapping[str, Any]) -> tuple[str, str]:
    """(title, words) of one event."""
    return event_label(kind), event_text(kind, data)


def with_lines(card: Mapping[str, Any]) -> dict[str, Any]:
    """An operator card in words: each IVR path step gets ``line`` ([title, text]) and the call its
    ``ivr_reason_text``."""
    out = dict(card)
    if card.get("ivr_path"):
        out["ivr_path"] = [{**step, "line": list(event_line(str(step.get("kind")), step))} for step in card["ivr_path"]]
    call = card.get("call")
    if isinstance(call, Mapping):
        out["call"] = {**call, "ivr_reason_text": reason_text(call.get("ivr_reason"))}
    return out
