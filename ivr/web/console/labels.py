"""Russian words for the call's vocabulary (crm_bridge.contract), shared by every console page.

One table per declared vocabulary, keyed by its enum: a member without words fails
``tests/contract/test_labels.py``, so a new outcome, reason or event kind cannot reach a page raw.
"""

from __future__ import annotations

from crm_bridge.contract.dialplan import AGI_STATUS_REASON_PREFIX
from crm_bridge.contract.events import EventKind
from crm_bridge.contract.outcomes import (
    AFTER_HOURS_PREFIX,
    HANGUP_AT_PREFIX,
    IN_PROGRESS,
    HangupBy,
    Outcome,
    Reason,
)

# calls.outcome, as a supervisor reads it.
OUTCOME_LABELS: dict[str, str] = {
    Outcome.ORDER_PLACED: "Заказ оформлен роботом",
    Outcome.OPERATOR_ANSWERED: "Ответил оператор",
    Outcome.OPERATOR: "Передан оператору",
    Outcome.ABANDONED_IN_QUEUE: "Сбросил в очереди",
    Outcome.ABANDONED_IN_IVR: "Сбросил в меню робота",
    Outcome.QUEUE_TIMEOUT: "Очередь не дождалась",
    Outcome.CALLBACK_REQUESTED: "Просил перезвонить",
    Outcome.AFTER_HOURS: "Нерабочее время",
    Outcome.ERROR: "Ошибка",
    IN_PROGRESS: "Идёт / не завершён",
}

# Why the robot ended its part (IVR_REASON, calls.reason), in the words an operator reads at a glance.
REASON_LABELS: dict[str, str] = {
    Reason.ORDER_PLACED: "заказ оформлен роботом",
    Reason.CALLBACK_REQUESTED: "клиент просил перезвонить",
    Reason.CALLBACK_REQUESTED_IN_QUEUE: "клиент просил перезвонить, не дожидаясь в очереди",
    Reason.CALLER_REQUEST: "клиент попросил оператора",
    Reason.UNKNOWN_NUMBER: "номер не найден в базе",
    Reason.SHARED_NUMBER: "номер принадлежит нескольким клиентам",
    Reason.NO_CALLER_ID: "номер не определился (скрыт)",
    Reason.NO_PREVIOUS_ORDER: "у клиента нет прошлых заказов",
    Reason.NO_INPUT: "клиент не нажимал кнопки",
    Reason.INVALID_INPUT: "клиент дважды нажал не те кнопки",
    Reason.ORDER_EMPTIED: "клиент убрал из заказа все позиции",
    Reason.ORDER_REJECTED: "заказ не принят (товар недоступен)",
    Reason.ORDER_ALREADY_PLACED: "клиент вернулся в меню и изменил заказ: в силе заказ, оформленный ранее в звонке; "
                                 "измените его по просьбе клиента",
    Reason.CALLBACK_WITHOUT_NUMBER: "просил перезвонить, но номер скрыт",
    Reason.DATABASE_TIMEOUT: "сбой базы данных (не ответила вовремя)",
    Reason.DATABASE_ERROR: "сбой базы данных",
    Reason.ORDER_OUTCOME_UNKNOWN: "сбой базы при заказе: заказ мог быть оформлен, проверьте перед вводом",
    Reason.READBACK_FAILED: "заказ оформлен, но клиент не услышал подтверждение: назовите номер и сумму",
    Reason.TTS_ERROR: "сбой синтеза речи",
    Reason.PLAYBACK_FAILED: "сбой воспроизведения",
    Reason.INTERNAL_ERROR: "внутренняя ошибка робота",
    Reason.AGI_ERROR: "сбой связи с Asterisk (AGI)",
    Reason.PROTOCOL_ERROR: "сбой протокола AGI (ответ Asterisk не по порядку)",
    Reason.HANDLER_ERROR: "внутренняя ошибка робота",
    Reason.UNKNOWN_SCRIPT: "неизвестный сценарий",
    Reason.OVERLOADED: "робот перегружен",
    Reason.SHUTDOWN: "робот перезапускался, звонок передан оператору",
    Reason.SERVER_UNREACHABLE: "робот недоступен (сервер не ответил)",
    Reason.SERVER_LOST: "робот прервал звонок (сбой сервера)",
    Reason.HANGUP_AFTER_ORDER: "положил трубку после заказа",
    Reason.ENDED_WHILE_DISCONNECTED: "звонок закончился, пока не было связи с AMI",
}
# Callback tasks carry the call's outcome as their reason (abandoned_in_queue…), or a Reason.
TASK_REASON_LABELS: dict[str, str] = {
    Outcome.ABANDONED_IN_QUEUE: "не дождался ответа в очереди",
    Outcome.CALLBACK_REQUESTED: "просил перезвонить",
    Reason.CALLBACK_REQUESTED_IN_QUEUE: "просил перезвонить",  # tasks saved before the reason was unified
    Outcome.QUEUE_TIMEOUT: "очередь не дождалась оператора",
    Outcome.AFTER_HOURS: "звонил в нерабочее время",
}

EVENT_LABELS: dict[str, str] = {
    EventKind.CALL_STARTED: "Звонок начат",
    EventKind.CALL_AFTER_HOURS: "Нерабочее время",
    EventKind.CALLER_IDENTIFIED: "Поиск по номеру",
    EventKind.PROMPT_PLAYED: "Робот сказал",
    EventKind.DTMF_RECEIVED: "Нажаты клавиши",
    EventKind.ORDER_CREATED: "Заказ создан",
    EventKind.ORDER_UNCERTAIN: "Заказ под вопросом",
    EventKind.ORDER_ALREADY_PLACED: "Заказ уже оформлен",
    EventKind.STEP_FAILED: "Шаг не удался",
    EventKind.CALL_ESCALATED: "Передан оператору",
    EventKind.CALL_ERROR: "Ошибка робота",
    EventKind.CALL_ENDED: "Робот закончил",
    EventKind.CALLBACK_CREATED: "Задача перезвонить",
    EventKind.CALLBACK_IMPOSSIBLE: "Перезвонить невозможно",
    EventKind.QUEUE_ENTERED: "Вошёл в очередь",
    EventKind.QUEUE_ABANDONED: "Сбросил в очереди",
    EventKind.OPERATOR_RINGING: "Звонит оператору",
    EventKind.OPERATOR_NO_ANSWER: "Оператор не ответил",
    EventKind.OPERATOR_ANSWERED: "Ответил оператор",
    EventKind.CALL_TRANSFERRED: "Переведён",
    EventKind.CALL_HUNGUP: "Звонок завершён",
    EventKind.CDR: "CDR",
    EventKind.RECORDING_READY: "Запись готова",
    EventKind.RECORDING_MISSING: "Записи нет",
    EventKind.RECORDING_REFUSED: "Путь записи отклонён",
    EventKind.ORDER_PLACED: "Заказ",
    EventKind.CALL_RECORDED: "Звонок",
}

HANGUP_LABELS: dict[str, str] = {HangupBy.CALLER: "абонент", HangupBy.OPERATOR: "оператор", HangupBy.SYSTEM: "система"}

# caller.identified's status.
LOOKUP_STATUSES: dict[str, str] = {
    "found": "клиент найден по номеру",
    "unknown": "номер не найден в базе",
    "shared": "номер принадлежит нескольким клиентам",
    "invalid": "номер не определился",
}

ORDER_SOURCES = {"import": "из учётной системы", "ivr": "робот", "operator": "оператор"}


def outcome_label(outcome: str | None) -> str:
    if not outcome:
        return OUTCOME_LABELS[IN_PROGRESS]
    return OUTCOME_LABELS.get(outcome, outcome)


def event_label(kind: str) -> str:
    return EVENT_LABELS.get(kind, kind)


def reason_text(reason: str | None) -> str:
    """'caller_request' -> 'клиент попросил оператора'; 'after_hours:no_input' -> both parts;
    'hangup_at_menu' -> 'положил трубку (menu)'; 'agi_FAILURE' -> the dialplan's own word.
    Unknown ids are shown as they are."""
    if not reason:
        return ""
    words = []
    for part in (p for p in reason.split(":") if p):
        if part in REASON_LABELS:
            words.append(REASON_LABELS[part])
        elif part == AFTER_HOURS_PREFIX.rstrip(":"):
            words.append("звонок в нерабочее время")
        elif part in TASK_REASON_LABELS:
            words.append(TASK_REASON_LABELS[part])
        elif part.startswith(HANGUP_AT_PREFIX):
            words.append(f"положил трубку ({part.removeprefix(HANGUP_AT_PREFIX)})")
        elif part.startswith(AGI_STATUS_REASON_PREFIX):
            words.append(f"робот не ответил Asterisk ({part.removeprefix(AGI_STATUS_REASON_PREFIX)})")
        else:
            words.append(part)
    return "; ".join(words)


def task_reason_text(reason: str) -> str:
    """A callback task's reason; several joined by "; " when the customer called again."""
    return "; ".join(TASK_REASON_LABELS.get(p, reason_text(p)) for p in reason.split("; ") if p)


# --- the operator page's link and the wallboard's operator states (issue 10, points 2 and 7) -------------

# A queue member as app_queue reports it (ivr.calls.members.MEMBER_STATES).
MEMBER_STATE_LABELS: dict[str, str] = {
    "free": "свободен",
    "talking": "разговаривает",
    "ringing": "звонит",
    "unavailable": "недоступен",
    "paused": "на паузе",
    "unknown": "неизвестно",
}

# The operator page's feed: "live" (feed open, AMI connected), "reconnecting" (the page lost the
# feed and retries), "ami_down" (feed open, AMI not connected: no card can pop), "ami_disabled".
LINK_LABELS: dict[str, str] = {
    "connecting": "подключение…",
    "live": "на связи",
    "reconnecting": "переподключение…",
    "ami_down": "AMI недоступен",
    "ami_disabled": "AMI не настроен: карточка звонка не появится",
}


def member_state_text(state: str, paused_reason: str | None = None) -> str:
    """'на паузе: обед' when the pause has a reason."""
    text = MEMBER_STATE_LABELS.get(state, MEMBER_STATE_LABELS["unknown"])
    return f"{text}: {paused_reason}" if state == "paused" and paused_reason else text
