"""Caller-ID normalization to E.164: total, never raises on garbage."""

from __future__ import annotations

import re

import phonenumbers

# Values Asterisk/SIP providers put in CALLERID(num) when the number is withheld ("<unknown>" is
# Asterisk's own placeholder in AMI events before the number is known; the brackets are stripped).
_WITHHELD = {"", "anonymous", "unknown", "restricted", "private", "unavailable", "withheld", "none"}
_SCHEME = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)
# Keep only what a phone number can contain once the SIP decoration is gone.
_JUNK = re.compile(r"[^\d+]")


def caller_number(raw: str | None) -> str | None:
    """The caller id as Asterisk gave it (stripped), or None when it carries no number at all.

    The one definition of "no number" (empty, Asterisk's ``<unknown>``, a provider's ``anonymous``…)
    for everything that shows or keeps the raw caller id; ``normalize_phone`` applies it too.
    """
    if raw is None:
        return None
    text = str(raw).strip()
    return None if _bare(text).lower() in _WITHHELD else text


def _bare(text: str) -> str:
    return text.strip("<>\"'").strip()


def normalize_phone(raw: str | None, region: str = "RU") -> str | None:
    """Return the E.164 form of ``raw`` (``+79161234567``) or None when unusable.

    Accepts national forms (``8 916 123-45-67``, ``9161234567``), international ones with or
    without ``+``, and SIP-ish caller ids (``sip:+79161234567@host``, ``tel:+7…;phone-context=…``).
    Withheld markers (``anonymous``, ``Restricted``…), empty and invalid numbers give None.
    """
    if raw is None:
        return None
    try:
        text = _bare(str(raw).strip())
        if text.lower() in _WITHHELD:
            return None
        text = _SCHEME.sub("", text)
        text = text.split("@", 1)[0].split(";", 1)[0]  # drop host and URI parameters
        if text.lower() in _WITHHELD:
            return None
        digits = _JUNK.sub("", text)
        if not digits.strip("+"):
            return None
        if digits.startswith("00"):  # international prefix as dialled in Europe
            digits = "+" + digits[2:]
        number = _parse(digits, region)
        if number is None or not phonenumbers.is_valid_number(number):
            return None
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    except Exception:  # phonenumbers raises on odd input; a caller id must never break a call
        return None


def _parse(digits: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        number = None
    if (number is None or not phonenumbers.is_valid_number(number)) and not digits.startswith("+"):
        # "79161234567" in region RU parses as national garbage on some inputs: retry as international.
        try:
            number = phonenumbers.parse("+" + digits, None)
        except phonenumbers.NumberParseException:
            return None
    return number
