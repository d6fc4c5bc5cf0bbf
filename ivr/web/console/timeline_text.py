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
from crm_bridge.deals import DEFAULT_STAGES
from ivr.web.console import formats
from ivr.web.console.labels import (
    HANGUP_LABELS,
    LOOKUP_STATUSES,
    ORDER_SOURCES,
    event_label,
    outcome_label,
    reason_text,
    step_text,
    task_reason_text,
)

# Asterisk's CDR dispositions, as the supervisor says them.
CDR_DISPOSITIONS: dict[str, str] = {
    "ANSWERED": "отвечен",
    "NO ANSWER": "без ответа",
    "BUSY": "занято",
    "FAILED": "не состоялся",
    "CONGESTION": "сеть перегружена",
}
TRANSFER_TYPES: dict[str, str] = {"blind": "перевод без консультации", "attended": "перевод с консультацией"}


def duration(seconds: float | None) -> str:
    return formats.duration_text(seconds)


def _sentence(*bits: Any) -> str:
    return "; ".join(str(b) for b in bits if b)


def event_text(kind: str, data: Mapping[str, Any], zone: formats.ZoneLike,
               stages: Mapping[str, str] | None = None) -> str:
    """The interesting part of an event's data, in words (``zone``: the business time zone, for the
    moments an event names). A kind without its own sentence (one added to the contract but not yet
    here) reads as a plain "no details", never as its raw fields. ``stages``: the pipeline's stage
    names (``[deals] stages``), else the default pipeline's."""
    match kind:
        case EventKind.CALL_STARTED:
            caller = data.get("caller")
            return f"звонит {caller}" if caller else "номер скрыт"
        case EventKind.CALL_AFTER_HOURS:
            return "звонок вне рабочих часов операторов"
        case EventKind.PROMPT_PLAYED:
            return str(data.get("text") or data.get("step") or "")
        case EventKind.DTMF_RECEIVED:
            if data.get("source") == "voice":  # issue 12: said, not pressed; the words and what they meant
                said = f"сказал «{data.get('text') or ''}»"
                if data.get("status") == "not_understood":
                    return f"{said}, не понято"
                return f"{said} = «{data.get('digits') or '#'}»"
            if data.get("timed_out") and not data.get("digits"):
                return "ничего не нажато и не сказано" if data.get("status") else "ничего не нажато"
            return f"«{data.get('digits') or ''}»" + (" (время вышло)" if data.get("timed_out") else "")
        case EventKind.CALLER_IDENTIFIED:
            return LOOKUP_STATUSES.get(str(data.get("status")), "номер не удалось проверить")
        case EventKind.OPERATOR_RINGING | EventKind.OPERATOR_NO_ANSWER | EventKind.OPERATOR_ANSWERED:
            who = str(data.get("operator_name") or data.get("operator_interface") or "")
            if kind == EventKind.OPERATOR_ANSWERED and data.get("hold_time") is not None:
                who += f", ждал {duration(data.get('hold_time'))}"
            if kind == EventKind.OPERATOR_NO_ANSWER and data.get("ring_seconds") is not None:
                who += f", звонил {duration(data.get('ring_seconds'))}"
            return who
        case EventKind.QUEUE_ENTERED:
            position = f", позиция {data['position']}" if data.get("position") else ""
            return f"очередь {data.get('queue') or ''}{position}"
        case EventKind.QUEUE_ABANDONED:
            return f"ждал {duration(data.get('wait_seconds'))}"
        case EventKind.RECORDING_READY:
            seconds = data.get("seconds")
            length = f", длительность {duration(seconds)}" if seconds is not None else ""
            return f"файл {Path(str(data.get('path') or '')).name}{length}"
        case EventKind.RECORDING_MISSING:
            return f"файл {Path(str(data.get('path') or '')).name} не найден"
        case EventKind.RECORDING_REFUSED:
            return "путь к записи вне каталога записей, файл не показан"
        case EventKind.TRANSCRIPT_READY:
            if data.get("state") == "failed":
                return f"не удалась: {data.get('error') or 'причина в журнале'}"
            if data.get("state") == "empty":
                return "слов в записи не распознано"
            text = str(data.get("text") or "")
            return f"«{text[:200]}{'…' if len(text) > 200 else ''}»"
        case EventKind.CALL_ENDED:
            return _sentence(outcome_label(data.get("outcome")), reason_text(data.get("reason")))
        case EventKind.CALL_HUNGUP:
            who = HANGUP_LABELS.get(str(data.get("who")), "")
            return outcome_label(data.get("outcome")) + (f", положил {who}" if who else "")
        case EventKind.CALL_ESCALATED | EventKind.CALLBACK_IMPOSSIBLE:
            return reason_text(data.get("reason"))
        case EventKind.STEP_FAILED:
            return _sentence(step_text(data.get("step")), reason_text(data.get("reason")))
        case EventKind.CALL_ERROR:
            # ``error`` is the robot's internal message (often English): the log has it, the page does not.
            step = step_text(data.get("step"))
            return f"сбой робота на шаге «{step}»" if step else "сбой робота"
        case EventKind.CALL_TRANSFERRED:
            how = TRANSFER_TYPES.get(str(data.get("type") or ""), "перевод")
            target = data.get("extension") or data.get("target_channel")
            failed = str(data.get("result") or "success").lower() != "success"  # AMI: Success | Fail | Invalid…
            return how + (f" на {target}" if target else "") + (" не удался" if failed else "")
        case EventKind.CDR:
            return _cdr_text(data)
        case EventKind.ORDER_CREATED:
            total = f" на {formats.money_text(data['total'])}" if data.get("total") else ""
            text = f"заказ {data.get('order_id') or ''}{total}, счёт {data.get('invoice') or ''}"
            text += ", повтор уже оформленного" if data.get("replayed") else ""
            return text + (" (стало известно после передачи оператору)" if data.get("after_handover") else "")
        case EventKind.ORDER_ALREADY_PLACED:
            text = f"в силе заказ {data.get('order_id') or ''}, оформленный ранее в звонке"
            asked = ", ".join(f"{line.get('sku')} × {line.get('quantity')}" for line in data.get("lines") or [])
            return text + (f"; клиент просил: {asked} (не оформлено)" if asked else "")
        case EventKind.ORDER_UNCERTAIN:
            return "база не ответила, оформлен ли заказ: проверьте заказы клиента, прежде чем вводить его снова"
        case EventKind.CALLBACK_CREATED:
            due = formats.datetime_text(data.get("due_at"), zone)
            return _sentence(f"перезвонить до {due}" if due else "", task_reason_text(str(data.get("reason") or "")))
        case EventKind.ORDER_PLACED:
            source = ORDER_SOURCES.get(data.get("source") or "", "")
            text = f"{data.get('order_id')} на {formats.money_text(data.get('total'))}"
            text += f", {source}" if source else ""
            day = formats.date_text(data.get("delivery_date"))
            return text + (f", доставка {day}" if day else "")
        case EventKind.ORDER_CANCELLED:
            invoice = f", счёт {data['invoice']} аннулирован" if data.get("invoice") else ""
            return (f"{_by(data)} отменил(а) заказ {data.get('order_id') or ''}{invoice}. "
                    f"Причина: {data.get('reason') or '—'}")
        case EventKind.ORDER_CHANGED:
            now = _lines_text(data.get("lines"))
            before = _lines_text(data.get("previous_lines"))
            invoice = ""
            if data.get("invoice"):
                invoice = f", счёт {data['invoice']} пересчитан (редакция {data.get('revision')})"
            return (f"{_by(data)} изменил(а) заказ {data.get('order_id') or ''}: было {before or '—'}, "
                    f"стало {now or '—'}; сумма {formats.money_text(data.get('previous_total'))} → "
                    f"{formats.money_text(data.get('total'))}{invoice}. "
                    f"Причина: {data.get('reason') or '—'}")
        case EventKind.CUSTOMER_CREATED:
            number = f" по звонку с номера {data['number']}" if data.get("number") else ""
            return f"{_by(data)} завёл(а) клиента{number}."
        case EventKind.CUSTOMER_CHANGED:
            previous = data.get("previous_address") or "—"
            return f"{_by(data)} изменил(а) адрес: {data.get('address') or '—'} (был: {previous})."
        case EventKind.PHONE_ATTACHED:
            others = data.get("shared_with") or []
            shared = f"; номер общий с клиентом {', '.join(others)}" if others else ""
            return f"{_by(data)} привязал(а) номер {data.get('number') or ''}{shared}."
        case EventKind.CALLBACK_NOTE:
            return f"{_by(data)} к задаче перезвонить №{data.get('task_id')}: «{data.get('note') or ''}»"
        case EventKind.DEAL_CREATED:
            name = _stage_name(data.get("stage"), stages)
            who = f", {data['by']}" if data.get("by") else ""
            subject = (f"по заказу {data['order_id']}" if data.get("order_id")
                       else f"по звонку с {data.get('number') or '—'}")
            return f"сделка {subject}, стадия «{name}», {formats.money_text(data.get('amount'))}{who}"
        case EventKind.DEAL_STAGE_CHANGED:
            moved = (f"{_by(data)}: «{_stage_name(data.get('previous_stage'), stages)}» → "
                     f"«{_stage_name(data.get('stage'), stages)}»")
            return moved + (f" ({data['reason']})" if data.get("reason") else "")
        case EventKind.CALL_RECORDED:
            bits = [outcome_label(data.get("outcome")), reason_text(data.get("reason"))]
            if data.get("operator"):
                bits.append(f"оператор {data['operator']}")
            return _sentence(*bits)
    return "подробностей нет"


def _stage_name(code: Any, stages: Mapping[str, str] | None) -> str:
    names = stages if stages is not None else dict(DEFAULT_STAGES)
    return names.get(str(code), str(code or "—"))


def _by(data: Mapping[str, Any]) -> str:
    return f"Сотрудник {data['by']}" if data.get("by") else "Сотрудник"


def _lines_text(lines: Any) -> str:
    return ", ".join(f"{line.get('sku')} × {line.get('quantity')}" for line in lines or [] if isinstance(line, Mapping))


def _cdr_text(data: Mapping[str, Any]) -> str:
    """Asterisk's call detail record as a sentence: who called where, the verdict, how long."""
    disposition = CDR_DISPOSITIONS.get(str(data.get("disposition") or "").upper(), "")
    route = " → ".join(str(x) for x in (data.get("source"), data.get("destination")) if x)
    bits = [f"звонок {disposition}" if disposition else "звонок"]
    if route:
        bits.append(route)
    if data.get("duration") is not None:
        bits.append(f"всего {duration(data['duration'])}")
    if data.get("billsec") is not None and disposition == CDR_DISPOSITIONS["ANSWERED"]:
        bits.append(f"разговор {duration(data['billsec'])}")
    return ", ".join(bits)


def event_line(kind: str, data: Mapping[str, Any], zone: formats.ZoneLike) -> tuple[str, str]:
    """(title, words) of one event."""
    return event_label(kind), event_text(kind, data, zone)


def with_lines(card: Mapping[str, Any], zone: formats.ZoneLike) -> dict[str, Any]:
    """An operator card in words: each IVR path step gets ``line`` ([title, text]), the call its
    ``ivr_reason_text``, each last order its ``ordered_at_text`` and ``total_text`` (business time,
    the console's money), so the browser shows what the server would."""
    out = dict(card)
    if card.get("ivr_path"):
        out["ivr_path"] = [{**step, "line": list(event_line(str(step.get("kind")), step, zone))}
                           for step in card["ivr_path"]]
    if card.get("last_orders"):
        out["last_orders"] = [
            {**order, "ordered_at_text": formats.datetime_text(order.get("ordered_at"), zone),
             "total_text": formats.money_text(order.get("total"))}
            for order in card["last_orders"]
        ]
    call = card.get("call")
    if isinstance(call, Mapping):
        out["call"] = {**call, "ivr_reason_text": reason_text(call.get("ivr_reason"))}
    return out
