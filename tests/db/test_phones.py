import pytest

from crm_bridge.phones import caller_number, normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8 916 123-45-67", "+79161234567"),
        ("89161234567", "+79161234567"),
        ("79161234567", "+79161234567"),
        ("+7 (916) 123-45-67", "+79161234567"),
        ("9161234567", "+79161234567"),
        ("  +7 916 123 45 67 ", "+79161234567"),
        ("sip:+79161234567@pbx.example.com", "+79161234567"),
        ("<sip:89161234567@10.0.0.1:5060>", "+79161234567"),
        ("tel:+79161234567;phone-context=example.com", "+79161234567"),
        ("0079161234567", "+79161234567"),
        ("84951234567", "+74951234567"),
        ("+12025550123", "+12025550123"),
        ("anonymous", None),
        ("Anonymous", None),
        ("unknown", None),
        ("Restricted", None),
        ("sip:anonymous@anonymous.invalid", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("123", None),
        ("abc", None),
        ("+7 000 000", None),
        ("\x00\xff☎", None),
    ],
)
def test_normalize_phone(raw: str | None, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


# One definition of "no number" for the raw caller id (AMI events, the tracker) and for normalization.
@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("<unknown>", None),  # Asterisk, before the number is known
        ("unknown", None),
        ("Anonymous", None),  # SIP providers' withheld markers
        ("restricted", None),
        (" +79161234567 ", "+79161234567"),
        ("101", "101"),  # an internal extension is a number, just not an E.164 one
    ],
)
def test_caller_number_is_none_exactly_when_normalization_sees_no_number(raw, shown) -> None:
    assert caller_number(raw) == shown
    if shown is None:
        assert normalize_phone(raw) is None
