"""The captured Asterisk 22.10.1 wire traces (AGI, AMI, AudioSocket, SIP, CDR/CEL, a recording), kept in
the repository under tests/data/asterisk-traces: the ground truth of the fake Asterisk in the tests."""

from __future__ import annotations

from pathlib import Path

TRACES = Path(__file__).resolve().parent / "data" / "asterisk-traces"
