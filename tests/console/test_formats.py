"""The one formatter (ivr.web.console.formats) and the words around it (labels, timeline_text): business
time in Moscow across a UTC day boundary, Russian month names, one money format, a sentence for every
timeline event, a Russian sentence for every API error id, Russian statistics CSV names."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm_bridge.contract.events import EventKind
from ivr.web.console.formats import (
    MONTHS_GENITIVE,
    NBSP,
    date_text,
    datetime_text,
    duration_text,
    money_text,
    time_text,
)
from ivr.web.console.labels import API_ERROR_LABELS, ROLE_LABELS, UNKNOWN_ERROR_TEXT, api_error_text, reason_text
from ivr.web.console.timeline_text import event_text, with_lines

MSK = ZoneInfo("Europe/Moscow")
ROOT = Path(__file__).resolve().parents[2]
# A "key=value" dump of an event's fields, as the old fallback wrote it.
KEY_VALUE = re.compile(r"\b[a-z_]+=\S")


def test_late_evening_in_moscow_is_the_same_utc_day():
    at = datetime(2026, 11, 28, 20, 30, tzinfo=UTC)  # 23:30 in Moscow
    assert datetime_text(at, MSK) == "28 ноября 2026, 23:30"
    assert datetime_text(at, "Europe/Moscow", seconds=True) == "28 ноября 2026, 23:30:00"
    assert time_text(at, MSK) == "23:30:00" and time_text(at, MSK, seconds=False) == "23:30"
    assert date_text(at, MSK) == "28 ноября 2026"


def test_after_midnight_in_moscow_is_the_previous_utc_day():
    at = datetime(2026, 11, 27, 22, 30, tzinfo=UTC)  # 01:30 on the 28th in Moscow
    assert datetime_text(at, MSK) == "28 ноября 2026, 01:30"
    assert date_text(at, MSK) == "28 ноября 2026"
    # the store's naive datetimes and the feed's ISO strings are UTC too
    assert datetime_text(datetime(2026, 11, 27, 22, 30), MSK) == "28 ноября 2026, 01:30"
    assert datetime_text("2026-11-27T22:30:00+00:00", MSK) == "28 ноября 2026, 01:30"
    assert datetime_text("2026-11-27T22:30:00", MSK) == "28 ноября 2026, 01:30"


def test_new_year_crosses_the_year_in_moscow_only():
    assert datetime_text(datetime(2026, 12, 31, 21, 5, tzinfo=UTC), MSK) == "1 января 2027, 00:05"


@pytest.mark.parametrize("month", range(1, 13))
def test_month_names_are_genitive(month):
    assert date_text(date(2026, month, 1)) == f"1 {MONTHS_GENITIVE[month - 1]} 2026"
    assert MONTHS_GENITIVE[2] == "марта" and MONTHS_GENITIVE[4] == "мая" and MONTHS_GENITIVE[10] == "ноября"


def test_short_days_for_chart_axes():
    from ivr.web.console.formats import short_day_text

    assert [short_day_text(date(2026, m, d)) for m, d in ((11, 28), (5, 1), (6, 9), (7, 31))] == [
        "28 ноя", "1 мая", "9 июн", "31 июл"]


def test_plain_dates_and_nothing():
    assert date_text("2026-11-29") == "29 ноября 2026"
    assert date_text(None) == "" and datetime_text(None, MSK) == "" and time_text("", MSK) == ""
    assert datetime_text("not a date", MSK) == ""
    with pytest.raises(TypeError):
        date_text(datetime(2026, 11, 28, tzinfo=UTC))  # a moment's day depends on the zone: name it


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1400.00", "1 400,00 ₽"),
        (Decimal("1400"), "1 400,00 ₽"),
        (350, "350,00 ₽"),
        (0.1, "0,10 ₽"),
        ("1234567.891", "1 234 567,89 ₽"),
        (Decimal("-1400.5"), "-1 400,50 ₽"),
        ("0", "0,00 ₽"),
    ],
)
def test_money_groups_with_no_break_spaces(value, shown):
    assert money_text(value) == shown.replace(" ", NBSP)
    assert " " not in money_text(value)  # never a plain space: an amount does not break across lines


def test_money_of_nothing_and_of_no_number():
    assert money_text(None) == "" and money_text("") == "" and money_text("abc") == "abc"


def test_durations():
    assert duration_text(None) == "—" and duration_text(5) == "0:05" and duration_text(75.4) == "1:15"
    assert duration_text(3725) == "1:02:05"


# --- timeline sentences -------------------------------------------------------------------------------

# A realistic payload for every kind (crm_bridge.contract.events), with every field filled.
SAMPLES: dict[str, dict] = {
    EventKind.CALL_STARTED: {"caller": "+79161234567", "channel": "PJSIP/trunk-0001", "script": "repeat-order",
                             "language": "ru"},
    EventKind.CALL_AFTER_HOURS: {},
    EventKind.CALLER_IDENTIFIED: {"status": "found", "number": "+79161234567", "candidates": ["C001"],
                                  "last_order": "A-1"},
    EventKind.PROMPT_PLAYED: {"step": "menu", "text": "Здравствуйте", "prompts": ["a.wav"]},
    EventKind.DTMF_RECEIVED: {"step": "menu", "digits": "1", "timed_out": False},
    EventKind.ORDER_CREATED: {"order_id": "A-7", "invoice": "СЧ-7", "total": "1400.00", "replayed": False,
                              "delivery_date": "2026-11-29", "lines": [{"sku": "W19", "quantity": 2}],
                              "after_hangup": False},
    EventKind.ORDER_UNCERTAIN: {"idempotency_key": "ivr:1"},
    EventKind.ORDER_ALREADY_PLACED: {"order_id": "A-7", "idempotency_key": "ivr:1",
                                     "lines": [{"sku": "WATER-19", "quantity": 9}],
                                     "placed_lines": [{"sku": "WATER-19", "quantity": 3}]},
    EventKind.STEP_FAILED: {"step": "order", "reason": "database_timeout"},
    EventKind.CALL_ESCALATED: {"reason": "caller_request"},
    EventKind.CALL_ERROR: {"step": "menu", "error": "KeyError('x')"},
    EventKind.CALL_ENDED: {"outcome": "operator", "reason": "hangup_at_menu", "step": "menu", "cause": "calls"},
    EventKind.CALLBACK_CREATED: {"task_id": 3, "reason": "callback_requested", "due_at": "2026-11-28T20:30:00+00:00",
                                 "created": True, "attempts": 0, "number": "+79161234567"},
    EventKind.CALLBACK_IMPOSSIBLE: {"reason": "callback_without_number"},
    EventKind.QUEUE_ENTERED: {"queue": "operators", "position": 1, "count": 1},
    EventKind.QUEUE_ABANDONED: {"queue": "operators", "wait_seconds": 42.0, "position": 1, "original_position": 2},
    EventKind.OPERATOR_RINGING: {"operator_interface": "PJSIP/101", "operator_name": "Анна", "queue": "operators",
                                 "caller": "+79161234567"},
    EventKind.OPERATOR_NO_ANSWER: {"operator_interface": "PJSIP/101", "operator_name": "Анна", "ring_seconds": 15.0},
    EventKind.OPERATOR_ANSWERED: {"operator_interface": "PJSIP/101", "operator_name": "Анна", "hold_time": 12.0,
                                  "ring_time": 3.0, "queue": "operators", "caller": "+79161234567"},
    EventKind.CALL_TRANSFERRED: {"type": "blind", "result": "Success", "transferer_channel": "PJSIP/101-1",
                                 "transferee_channel": "PJSIP/t-1", "target_channel": None, "extension": "102",
                                 "context": "operators", "dest_type": "Bridge"},
    EventKind.CALL_HUNGUP: {"who": "caller", "outcome": "operator_answered", "cause": "16", "talk_seconds": 60.0,
                            "wait_seconds": 12.0, "reason": None},
    EventKind.CDR: {"uniqueid": "1700000000.1", "channel": "PJSIP/t-1", "dest_channel": "Local/101@agents",
                    "source": "+79161234567", "destination": "s", "last_app": "Queue", "duration": 95,
                    "billsec": 60, "disposition": "ANSWERED", "start": "2026-11-28 20:30:00",
                    "answer": "2026-11-28 20:30:35", "end": "2026-11-28 20:31:35"},
    EventKind.RECORDING_READY: {"path": "/var/spool/asterisk/monitor/ivr/1700000000.1.wav", "seconds": 60.0,
                                "bytes": 960000},
    EventKind.RECORDING_MISSING: {"path": "/var/spool/asterisk/monitor/ivr/1700000000.1.wav"},
    EventKind.RECORDING_REFUSED: {"path": "/etc/passwd"},
    EventKind.TRANSCRIPT_READY: {"transcript_id": 7, "state": "done", "language": "ru", "model": "vosk-model-ru-0.42",
                                 "seconds": 95.5, "words": 4, "speakers": ["caller", "robot"],
                                 "text": "да повторить прошлый заказ"},
    EventKind.ORDER_PLACED: {"order_id": "A-7", "total": "1400.00", "source": "operator", "invoice": "СЧ-7",
                             "delivery_date": "2026-11-29", "lines": 1},
    EventKind.CALL_RECORDED: {"outcome": "operator_answered", "reason": "caller_request",
                              "caller_number": "+79161234567", "operator": "Анна"},
    # issue 10: corrections from the console
    EventKind.ORDER_CANCELLED: {"order_id": "A-7", "by": "Анна (op1)", "reason": "отказ", "total": "1400.00",
                                "invoice": "СЧ-7", "delivery_date": "2026-11-29"},
    EventKind.ORDER_CHANGED: {"order_id": "A-7", "by": "Анна (op1)", "reason": "ещё бутыль", "revision": 2,
                              "previous_total": "1400.00", "total": "1750.00", "invoice": "СЧ-7",
                              "lines": [{"sku": "WATER-19", "quantity": 5}],
                              "previous_lines": [{"sku": "WATER-19", "quantity": 4}]},
    EventKind.CUSTOMER_CREATED: {"by": "Анна (op1)", "number": "+79260001122", "name": "Сидорова Мария"},
    EventKind.CUSTOMER_CHANGED: {"by": "Анна (op1)", "address": "ул. Новая, 1", "previous_address": "ул. Старая, 2"},
    EventKind.PHONE_ATTACHED: {"by": "Анна (op1)", "number": "+79260001122", "shared_with": ["C001"]},
    EventKind.CALLBACK_NOTE: {"by": "Анна (op1)", "task_id": 7, "note": "после 18"},
    EventKind.DEAL_CREATED: {"deal_id": 3, "order_id": "A-7", "stage": "new", "amount": "1400.00", "source": "ivr",
                             "by": None},
    EventKind.DEAL_STAGE_CHANGED: {"deal_id": 3, "by": "Анна (op1)", "stage": "in_delivery",
                                   "previous_stage": "confirmed", "order_id": "A-7"},
}


def test_deal_events_name_the_stages_by_the_pipeline():
    created = event_text(EventKind.DEAL_CREATED, SAMPLES[EventKind.DEAL_CREATED], MSK)
    assert created == f"сделка по заказу A-7, стадия «Новая», 1{NBSP}400,00{NBSP}₽"
    moved = event_text(EventKind.DEAL_STAGE_CHANGED, SAMPLES[EventKind.DEAL_STAGE_CHANGED], MSK)
    assert moved == "Сотрудник Анна (op1): «Подтверждена» → «В доставке»"
    renamed = event_text(EventKind.DEAL_STAGE_CHANGED, SAMPLES[EventKind.DEAL_STAGE_CHANGED], MSK,
                         stages={"confirmed": "Согласована", "in_delivery": "Везём"})
    assert renamed == "Сотрудник Анна (op1): «Согласована» → «Везём»"


def test_every_kind_has_a_sample():
    assert set(SAMPLES) == set(EventKind)


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_event_reads_as_russian_words(kind):
    text = event_text(kind, SAMPLES[kind], MSK)
    assert text, kind
    assert not KEY_VALUE.search(text), text
    assert not re.search(r"\d\.\d\d\b", text), text  # money with a decimal point: "1400.00"
    assert "uniqueid" not in text and "None" not in text and "{" not in text, text
    # the prompt's own words, and the keys pressed under the title "Нажаты клавиши"
    assert re.search(r"[а-яё]", text, re.IGNORECASE) or kind in (EventKind.PROMPT_PLAYED, EventKind.DTMF_RECEIVED)


def test_a_spoken_answer_reads_as_the_words_and_what_they_meant():
    said = {"step": "menu", "digits": "1", "timed_out": False, "source": "voice", "text": "да"}
    assert event_text(EventKind.DTMF_RECEIVED, said, MSK) == "сказал «да» = «1»"
    keep = {"step": "quantity:W", "digits": "", "timed_out": False, "source": "voice", "text": "оставить"}
    assert event_text(EventKind.DTMF_RECEIVED, keep, MSK) == "сказал «оставить» = «#»"
    unclear = {"step": "menu", "digits": "", "timed_out": True, "source": "voice", "text": "да нет",
               "status": "not_understood"}
    assert event_text(EventKind.DTMF_RECEIVED, unclear, MSK) == "сказал «да нет», не понято"
    silent = {"step": "menu", "digits": "", "timed_out": True, "source": "key", "status": "no_input"}
    assert event_text(EventKind.DTMF_RECEIVED, silent, MSK) == "ничего не нажато и не сказано"
    pressed = {"step": "menu", "digits": "2", "timed_out": False, "source": "key"}
    assert event_text(EventKind.DTMF_RECEIVED, pressed, MSK) == "«2»"


def test_event_sentences_use_the_business_zone_and_money_format():
    assert event_text(EventKind.CALLBACK_CREATED, SAMPLES[EventKind.CALLBACK_CREATED], MSK).startswith(
        "перезвонить до 28 ноября 2026, 23:30")
    placed = event_text(EventKind.ORDER_PLACED, SAMPLES[EventKind.ORDER_PLACED], MSK)
    assert placed == f"A-7 на 1{NBSP}400,00{NBSP}₽, оператор, доставка 29 ноября 2026"
    assert f"1{NBSP}400,00{NBSP}₽" in event_text(EventKind.ORDER_CREATED, SAMPLES[EventKind.ORDER_CREATED], MSK)
    cdr = event_text(EventKind.CDR, SAMPLES[EventKind.CDR], MSK)
    assert cdr == "звонок отвечен, +79161234567 → s, всего 1:35, разговор 1:00"
    assert "KeyError" not in event_text(EventKind.CALL_ERROR, SAMPLES[EventKind.CALL_ERROR], MSK)
    assert event_text(EventKind.CALL_ENDED, SAMPLES[EventKind.CALL_ENDED], MSK) == (
        "Передан оператору; положил трубку (меню)")


def test_an_unknown_kind_never_dumps_its_fields():
    assert event_text("future.kind", {"secret": "x", "a": 1}, MSK) == "подробностей нет"


def test_operator_card_gets_business_time_and_money():
    card = {"last_orders": [{"order_id": "A-1", "ordered_at": "2026-11-27T22:30:00+00:00", "total": "1400.00",
                             "lines": []}],
            "ivr_path": [{"kind": "callback.created", "due_at": "2026-11-28T20:30:00+00:00"}]}
    out = with_lines(card, "Europe/Moscow")
    assert out["last_orders"][0]["ordered_at_text"] == "28 ноября 2026, 01:30"
    assert out["last_orders"][0]["total_text"] == f"1{NBSP}400,00{NBSP}₽"
    assert out["ivr_path"][0]["line"][1] == "перезвонить до 28 ноября 2026, 23:30"


# --- labels -----------------------------------------------------------------------------------------------


def test_every_api_error_id_has_a_russian_sentence():
    """Scripts show labels.API_ERROR_LABELS[error.id], never the back end's English message: every id
    any route can answer with must be in the table."""
    sources = [*(ROOT / "ivr" / "web").rglob("*.py")]
    ids = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        ids |= set(re.findall(r'api_error\(\s*[\w.]+,\s*"([a-z_]+)"', text))
        ids |= set(re.findall(r'\(\w+, \d{3}, "([a-z_]+)"\)', text))  # operator_api._ORDER_ERRORS
    assert {"customer_not_found", "unknown_product", "unauthorized"} <= ids
    assert ids <= set(API_ERROR_LABELS), ids - set(API_ERROR_LABELS)
    for sentence in API_ERROR_LABELS.values():
        assert re.search(r"[А-ЯЁ]", sentence) and sentence.endswith("."), sentence
    assert api_error_text("no_such_id") == UNKNOWN_ERROR_TEXT


def test_roles_and_steps_in_russian():
    assert ROLE_LABELS == {"operator": "Оператор", "supervisor": "Старший смены", "admin": "Администратор"}
    assert reason_text("hangup_at_quantity:W19") == "положил трубку (количество товара W19)"


def test_a_transcript_event_reads_its_words_or_why_there_are_none():
    done = event_text(EventKind.TRANSCRIPT_READY, SAMPLES[EventKind.TRANSCRIPT_READY], MSK)
    assert done == "«да повторить прошлый заказ»"
    assert event_text(EventKind.TRANSCRIPT_READY, {"state": "empty", "words": 0}, MSK) == "слов в записи не распознано"
    failed = event_text(EventKind.TRANSCRIPT_READY, {"state": "failed", "error": "recording file missing: a.wav"}, MSK)
    assert failed == "не удалась: recording file missing: a.wav"
    long = event_text(EventKind.TRANSCRIPT_READY, {"state": "done", "text": "слово " * 100}, MSK)
    assert len(long) < 210 and long.endswith("…»")
