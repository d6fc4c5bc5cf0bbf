"""Russian labels for call outcomes and hand-over reasons, shared by every console page."""

from __future__ import annotations

# calls.outcome, as a supervisor reads it.
OUTCOME_LABELS = {
    "order_placed": "Заказ оформлен роботом",
    "operator_answered": "Ответил оператор",
    "operator": "Передан оператору",
    "abandoned_in_queue": "Сбросил в очереди",
    "abandoned_in_ivr": "Сбросил в меню робота",
    "abandoned": "Сбросил",
    "queue_timeout": "Очередь не дождалась",
    "callback_requested": "Просил перезвонить",
    "after_hours": "Нерабочее время",
    "error": "Ошибка",
    "in_progress": "Идёт / не завершён",
}

# Why the robot handed the caller over (IVR_REASON, calls.reason), in the words an operator reads
# at a glance.
REASON_LABELS: dict[str, str] = {
    "caller_request": "клиент попросил оператора",
    "unknown_number": "номер не найден в базе",
    "shared_number": "номер принадлежит нескольким клиентам",
    "no_caller_id": "номер не определился (скрыт)",
    "no_previous_order": "у клиента нет прошлых заказов",
    "no_input": "клиент не нажимал кнопки",
    "invalid_input": "клиент дважды нажал не те кнопки",
    "order_emptied": "клиент убрал из заказа все позиции",
    "order_rejected": "заказ не принят (товар недоступен)",
    "order_placed": "заказ оформлен роботом",
    "database_timeout": "сбой базы данных (не ответила вовремя)",
    "database_error": "сбой базы данных",
    "tts_error": "сбой синтеза речи",
    "playback_failed": "сбой воспроизведения",
    "internal_error": "внутренняя ошибка робота",
    "unknown_script": "неизвестный сценарий",
    "overloaded": "робот перегружен",
    "shutdown": "робот перезапускался, звонок передан оператору",
    "server_unreachable": "робот недоступен (сервер не ответил)",
    "server_lost": "робот прервал звонок (сбой сервера)",
    "after_hours": "звонок в нерабочее время",
    "callback_requested": "клиент просил перезвонить",
    "abandoned_in_queue": "клиент не дождался ответа в очереди",
    "queue_timeout": "очередь не дождалась оператора",
    "hangup_after_order": "положил трубку после заказа",
    "ended_while_disconnected": "звонок закончился, пока не было связи с AMI",
    "callback_without_number": "просил перезвонить, но номер скрыт",
}


def outcome_label(outcome: str | None) -> str:
    if not outcome:
        return OUTCOME_LABELS["in_progress"]
    return OUTCOME_LABELS.get(outcome, outcome)


def reason_text(reason: str | None) -> str:
    """'caller_request' -> 'клиент попросил оператора'; 'after_hours:no_input' -> both parts;
    'hangup_at_menu' -> 'положил трубку (menu)'. Unknown ids are shown as they are."""
    if not reason:
        return ""
    words = []
    for part in (p for p in reason.split(":") if p):
        if part in REASON_LABELS:
            words.append(REASON_LABELS[part])
        elif part.startswith("hangup_at_"):
            words.append(f"положил трубку ({part.removeprefix('hangup_at_')})")
        else:
            words.append(part)
    return "; ".join(words)
