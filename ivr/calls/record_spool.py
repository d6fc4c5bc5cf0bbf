"""Local append-only files for call records the database could not take.

``spool.jsonl``: one line per batch (``{"records": [...]}``), appended and fsynced before the
writer counts the batch as kept; replayed in file order when the database answers again (and at
start-up, when a previous process left it behind). ``dead-letter.jsonl``: one line per record the
database rejected (``{"error": …, "record": …}``), for a human to read; never replayed.

A line torn by a crash in the middle of an append is not valid JSON: ``batches`` skips it with a
log line and moves it to the dead letters (nothing in it had been acknowledged anyway).
The file operations are small and blocking; the writer runs them in a thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from crm_bridge.call_log import CallRecord, record_from_json, record_to_json

log = structlog.get_logger("ivr.calls.spool")

SPOOL_FILE = "spool.jsonl"
DEAD_LETTER_FILE = "dead-letter.jsonl"


class RecordSpool:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / SPOOL_FILE
        self.dead_letter_path = self.directory / DEAD_LETTER_FILE

    def has_batches(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, records: Sequence[CallRecord]) -> None:
        """Append one batch and fsync it: once this returns, a crash cannot lose the batch."""
        line = json.dumps({"records": [record_to_json(r) for r in records]}, ensure_ascii=False)
        self._append_line(self.path, line)

    def batches(self) -> list[list[CallRecord]]:
        """Every batch in the file, in the order they were appended."""
        if not self.path.exists():
            return []
        out: list[list[CallRecord]] = []
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    out.append([record_from_json(r) for r in json.loads(line)["records"]])
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("spool_line_unreadable", line=number, error=repr(exc)[:200])
                    self._append_line(self.dead_letter_path, json.dumps({"error": repr(exc)[:300], "line": line}))
        return out

    def replace(self, batches: Sequence[Sequence[CallRecord]]) -> None:
        """Keep only ``batches`` (the ones not replayed yet): written aside, fsynced, renamed over."""
        if not batches:
            self.clear()
            return
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for batch in batches:
                handle.write(json.dumps({"records": [record_to_json(r) for r in batch]}, ensure_ascii=False))
                handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._sync_directory()

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._sync_directory()

    def dead_letter(self, record: CallRecord, error: str) -> None:
        self._append_line(self.dead_letter_path, json.dumps({"error": error, "record": record_to_json(record)},
                                                            ensure_ascii=False))

    def dead_letters(self) -> list[dict[str, Any]]:
        if not self.dead_letter_path.exists():
            return []
        return [json.loads(line) for line in self.dead_letter_path.read_text(encoding="utf-8").splitlines() if line]

    def _append_line(self, path: Path, line: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = (line + "\n").encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)

    def _sync_directory(self) -> None:
        # A rename or unlink is durable only once the directory entry is.
        if self.directory.exists():
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
