"""Local append-only files for call records the database could not take.

``spool-<slot>.jsonl``: one line per batch (``{"records": [...]}``), appended and fsynced before
the writer counts the batch as kept; replayed in file order when the database answers again (and
at start-up, when a previous process left it behind). ``dead-letter.jsonl``: one line per record
the database rejected (``{"error": …, "record": …}``), for a human to read; never replayed.

Several processes (``ivr serve --workers N``) share the directory: each claims a *slot* by holding
an exclusive ``flock`` on ``spool-<slot>.lock`` for its lifetime, so no two writers ever append to,
replay or delete the same file. On claiming, a process adopts every spool whose lock nobody holds
(its process died): their lines are appended to its own file, then those files are removed. A crash
in between leaves a batch in two files; replay writes it once anyway (crm_bridge.call_log).

A line torn by a crash in the middle of an append is not valid JSON: ``batches`` skips it with a
log line and moves it to the dead letters (nothing in it had been acknowledged anyway).
The file operations are small and blocking; the writer runs them in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from crm_bridge.call_log import CallRecord, record_from_json, record_to_json

log = structlog.get_logger("ivr.calls.spool")

DEAD_LETTER_FILE = "dead-letter.jsonl"


class RecordSpool:
    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.dead_letter_path = self.directory / DEAD_LETTER_FILE
        self._slot: int | None = None
        self._lock_fd: int | None = None

    @property
    def path(self) -> Path:
        """This process's spool file (claims a slot on first use)."""
        return self.directory / f"spool-{self._claim()}.jsonl"

    def close(self) -> None:
        """Release the slot (another process may adopt what is left in it)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = self._slot = None

    def _claim(self) -> int:
        if self._slot is not None:
            return self._slot
        self.directory.mkdir(parents=True, exist_ok=True)
        slot = 0
        while (fd := _try_lock(self.directory / f"spool-{slot}.lock")) is None:
            slot += 1
        self._slot, self._lock_fd = slot, fd
        own = self.directory / f"spool-{slot}.jsonl"
        if own.exists() and own.stat().st_size and not own.read_bytes().endswith(b"\n"):
            # The last append of the previous owner was torn: end that line, or the next batch
            # would be glued to it and lost with it.
            self._append_bytes(own, b"\n")
        self._adopt_orphans()
        return slot

    def _adopt_orphans(self) -> None:
        own = self.directory / f"spool-{self._slot}.jsonl"
        for lock in sorted(self.directory.glob("spool-*.lock")):
            data_file = lock.with_suffix(".jsonl")
            if data_file == own or not data_file.exists():
                continue
            fd = _try_lock(lock)
            if fd is None:
                continue  # a live process owns it
            try:
                data = data_file.read_bytes()
                if data:
                    if not data.endswith(b"\n"):
                        data += b"\n"  # a torn last line stays one bad line, not two
                    self._append_bytes(own, data)
                    log.warning("spool_adopted", source=str(data_file), bytes=len(data))
                data_file.unlink()
                self._sync_directory()
            finally:
                os.close(fd)

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
        self._append_bytes(path, (line + "\n").encode("utf-8"))

    @staticmethod
    def _append_bytes(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
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


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``path``, or None when someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd
