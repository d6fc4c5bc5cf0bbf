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
    Reason.DATABASE_UNAVAILABLE: "база данных недоступна с запуска робота",
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
    EventKind.CDR: "Данные АТС",
    EventKind.RECORDING_READY: "Запись готова",
    EventKind.RECORDING_MISSING: "Записи нет",
    EventKind.RECORDING_REFUSED: "Путь записи отклонён",
    EventKind.TRANSCRIPT_READY: "Расшифровка",
    EventKind.ORDER_CANCELLED: "Заказ отменён",
    EventKind.ORDER_CHANGED: "Заказ изменён",
    EventKind.CUSTOMER_CREATED: "Клиент создан",
    EventKind.CUSTOMER_CHANGED: "Адрес изменён",
    EventKind.PHONE_ATTACHED: "Номер привязан",
    EventKind.CALLBACK_NOTE: "Заметка к задаче",
    EventKind.DEAL_CREATED: "Сделка создана",
    EventKind.DEAL_STAGE_CHANGED: "Стадия сделки",
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

# Where the robot was (repeat_order_call.step, the flow's Ask steps): hangup_at_<step>, step.failed.
STEP_LABELS: dict[str, str] = {
    "start": "начало звонка",
    "lookup": "поиск клиента",
    "menu": "меню",
    "confirm": "подтверждение заказа",
    "order": "оформление заказа",
    "callback": "заявка на звонок",
    "goodbye": "прощание",
    "handover": "передача оператору",
}


def step_text(step: str | None) -> str:
    """'menu' -> 'меню'; 'quantity:W19' -> 'количество товара W19'; an unknown step as it is."""
    if not step:
        return ""
    if step.startswith("quantity:"):
        return f"количество товара {step.removeprefix('quantity:')}"
    return STEP_LABELS.get(step, step)


ORDER_SOURCES = {"import": "из учётной системы", "ivr": "робот", "operator": "оператор"}


def outcome_label(outcome: str | None) -> str:
    if not outcome:
        return OUTCOME_LABELS[IN_PROGRESS]
    return OUTCOME_LABELS.get(outcome, outcome)


def event_label(kind: str) -> str:
    return EVENT_LABELS.get(kind, kind)


def reason_text(reason: str | None) -> str:
    """'caller_request' -> 'клиент попросил оператора'; 'after_hours:no_input' -> both parts;
    'hangup_at_menu' -> 'положил трубку (меню)'; 'agi_FAILURE' -> the dialplan's own word.
    Unknown ids are shown as they are."""
    if not reason:
        return ""
    words = []
    parts = [p for p in reason.split(":") if p]
    # 'hangup_at_quantity:W19': the step itself holds a colon (the flow's per-product quantity step).
    for i, part in enumerate(parts):
        if part == f"{HANGUP_AT_PREFIX}quantity" and i + 1 < len(parts):
            parts[i:i + 2] = [f"{part}:{parts[i + 1]}"]
    for part in parts:
        if part in REASON_LABELS:
            words.append(REASON_LABELS[part])
        elif part == AFTER_HOURS_PREFIX.rstrip(":"):
            words.append("звонок в нерабочее время")
        elif part in TASK_REASON_LABELS:
            words.append(TASK_REASON_LABELS[part])
        elif part.startswith(HANGUP_AT_PREFIX):
            words.append(f"положил трубку ({step_text(part.removeprefix(HANGUP_AT_PREFIX))})")
        elif part.startswith(AGI_STATUS_REASON_PREFIX):
            words.append(f"робот не ответил Asterisk ({part.removeprefix(AGI_STATUS_REASON_PREFIX)})")
        else:
            words.append(part)
    return "; ".join(words)


def task_reason_text(reason: str) -> str:
    """A callback task's reason; several joined by "; " when the customer called again."""
    return "; ".join(TASK_REASON_LABELS.get(p, reason_text(p)) for p in reason.split("; ") if p)


# --- the console's own words: roles, API errors, the statistics export --------------------------------

# The AMI link's state (ivr.ami.client, ivr.app's cluster standby), as the wallboard says it.
AMI_STATUS_LABELS: dict[str, str] = {
    "connected": "подключен",
    "connecting": "подключается",
    "disconnected": "нет связи, переподключается",
    "auth_failed": "неверный логин или пароль AMI",
    "disabled": "выключен в настройках",
    "standby": "подключен в другом процессе",
}

ROLE_LABELS: dict[str, str] = {"operator": "Оператор", "supervisor": "Старший смены", "admin": "Администратор"}

# An API error id (``{"error": {"id": …}}``, ivr.web.common / operator_api) as a sentence the user
# reads. Pages and scripts show these, never the back end's English message (which names internals:
# "unknown customer: 'NOPE'"); an id missing here reads as UNKNOWN_ERROR_TEXT.
API_ERROR_LABELS: dict[str, str] = {
    "unauthorized": "Сеанс истёк: войдите в консоль заново.",
    "forbidden": "Это действие недоступно для вашей роли.",
    "cross_origin": "Запрос пришёл не со страницы консоли: обновите страницу.",
    "csrf_failed": "Страница устарела: обновите её и повторите.",
    "store_unavailable": "База данных сейчас недоступна: повторите через минуту.",
    "internal_error": "Сбой на сервере: повторите; если не поможет, сообщите администратору.",
    "customer_not_found": "Клиент с таким номером не найден.",
    "call_not_found": "Звонок не найден.",
    "task_not_found": "Задача не найдена: возможно, её уже закрыли.",
    "deal_not_found": "Сделка не найдена.",
    "invalid_stage": "Нет такой стадии сделки.",
    "invalid_by": "Не указано, кто перевёл сделку.",
    "invalid_status": "Неизвестный итог задачи.",
    "invalid_note": "Заметка должна быть текстом.",
    "bad_query": "Неверные параметры запроса.",
    "bad_request": "Неверный запрос.",
    "bad_json": "Неверный запрос.",
    "idempotency_key_required": "Обновите страницу и повторите.",
    "invalid_order": "Заказ заполнен неверно: проверьте товары и количество.",
    "unknown_product": "Такого товара нет в каталоге.",
    "inactive_product": "Этот товар больше не продаётся.",
    "invalid_quantity": "Количество должно быть целым числом от 1.",
    "empty_order": "В заказе нет ни одной позиции.",
    "idempotency_conflict": "Этот заказ уже оформлен на другого клиента: обновите страницу.",
    "possible_duplicate": "Повторный заказ? Такой же заказ у клиента уже есть за последние часы; не оформлен.",
    "metrics_disabled": "Метрики в этом процессе выключены.",
}
UNKNOWN_ERROR_TEXT = "Не удалось выполнить действие: повторите или обновите страницу."


def api_error_text(error_id: str | None) -> str:
    return API_ERROR_LABELS.get(error_id or "", UNKNOWN_ERROR_TEXT)


# The statistics CSV (stats_pages.statistics_csv): the first column is the Russian name, the last
# the stable machine key (the JSON's dotted path), so a spreadsheet reads and a script still parses.
STATS_METRIC_LABELS: dict[str, str] = {
    "period.from": "Период: с",
    "period.to": "Период: по",
    "period.start": "Начало периода",
    "period.end": "Конец периода (не включая)",
    "period.timezone": "Часовой пояс",
    "service_level_seconds": "Порог уровня сервиса, с",
    "calls.total": "Звонков всего",
    "calls.known_customer": "Звонков известных клиентов",
    "queue.entered": "Вошли в очередь",
    "queue.answered": "Ответил оператор",
    "queue.abandoned": "Сбросили в очереди",
    "queue.abandon_rate": "Доля потерянных в очереди",
    "queue.answered_within_service_level": "Ответ в пределах уровня сервиса",
    "queue.service_level": "Уровень сервиса",
    "queue.wait_seconds.answered.count": "Ожидание (ответил оператор): звонков",
    "queue.wait_seconds.answered.average": "Ожидание (ответил оператор): среднее, с",
    "queue.wait_seconds.answered.p90": "Ожидание (ответил оператор): p90, с",
    "queue.wait_seconds.abandoned.count": "Ожидание (сбросили): звонков",
    "queue.wait_seconds.abandoned.average": "Ожидание (сбросили): среднее, с",
    "queue.wait_seconds.abandoned.p90": "Ожидание (сбросили): p90, с",
    "queue.wait_seconds.all.count": "Ожидание (все в очереди): звонков",
    "queue.wait_seconds.all.average": "Ожидание (все в очереди): среднее, с",
    "queue.wait_seconds.all.p90": "Ожидание (все в очереди): p90, с",
    "queue.avg_talk_seconds": "Разговор, среднее, с",
    "orders.ivr": "Заказов роботом",
    "orders.ivr_amount": "Заказов роботом на сумму, ₽",
    "orders.operator_from_calls": "Заказов операторами из звонков",
    "orders.from_calls": "Заказов из звонков всего",
    "orders.ivr_share": "Доля заказов робота среди заказов из звонков",
    "automation.rate": "Автоматизация: робот закончил сам, доля",
    "automation.robot_finished": "Автоматизация: звонков робот закончил сам (числитель)",
    "automation.robot_answered": "Автоматизация: звонков принял робот (знаменатель)",
    "automation.robot_refused": "Автоматизация: звонков робот не принял (не в знаменателе)",
    "automation.definition": "Автоматизация: определение",
    "orders.ivr_per_known_customer_call": "Заказов робота на звонок известного клиента",
}
STATS_CSV_HEADERS: dict[str, str] = {
    "metric": "Показатель",
    "value": "Значение",
    "key": "Ключ",
    "operator_interface": "Интерфейс оператора",
    "operator_name": "Оператор",
    "calls_answered": "Принято звонков",
    "avg_talk_seconds": "Разговор, среднее, с",
    "avg_wait_seconds": "Ожидание клиентов, среднее, с",
    "orders": "Заказов",
    "hour": "Час",
    "calls": "Звонков",
    "day_day": "День",
    "day_calls": "Звонков",
    "day_robot_answered": "Принял робот",
    "day_robot_finished": "Робот закончил сам",
    "day_automation_rate": "Автоматизация",
    "day_operator_answered": "Ответил оператор",
    "day_operator_share": "Доля ответов оператора",
    "day_queued": "Вошли в очередь",
    "day_answered_within_service_level": "Ответ в пределах уровня сервиса",
    "day_service_level": "Уровень сервиса",
}


def stats_metric_label(key: str) -> str:
    """The Russian name of a flattened statistics key; outcomes and funnel stages from their tables."""
    if key in STATS_METRIC_LABELS:
        return STATS_METRIC_LABELS[key]
    if key.startswith("calls.by_outcome."):
        return f"Звонков с итогом «{outcome_label(key.removeprefix('calls.by_outcome.'))}»"
    if key.startswith("automation.finished_by_outcome."):
        return f"Автоматизация: робот закончил с итогом «{outcome_label(key.rpartition('.')[2])}»"
    if key.startswith("funnel."):
        from crm_bridge.stats import FUNNEL_STAGES  # stage names live with the SQL that counts them

        stage, _, field = key.removeprefix("funnel.").rpartition(".")
        title = dict(FUNNEL_STAGES).get(stage, stage)
        return f"Воронка: {title}" + (", доля от предыдущего этапа" if field == "share_of_previous" else "")
    return key


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
