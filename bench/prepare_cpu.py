"""CPU per warm Speaker.prepare(): a greeting and an order read-back, TTS child processes included.

Usage: PYTHONPATH=. .venv/bin/python bench/prepare_cpu.py N PROMPTS_DIR
(run `ivr prompts build` with IVR_PROMPTS__DIR=PROMPTS_DIR first). Works on main too (no release()).
"""

import asyncio
import os
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

from ivr.flows.model import Customer, Item, PromptRef
from ivr.speech.prompt_cache import PromptCache
from ivr.speech.speaker import Speaker
from ivr.speech.tts import EspeakEngine

CUSTOMER = Customer("C1", "Иванов", "Алексей", "Сергеевич", "ru")
WATER = Item("W", 4, "бутылка", "воды «Жемчужная роса» 19 л")


def greeting(_: int) -> PromptRef:
    return PromptRef("greeting_menu", {"customer": CUSTOMER, "order": (WATER,)})


def readback(i: int) -> PromptRef:  # a new order number every call, as in production
    return PromptRef("order_placed", {
        "number": f"A-{1000 + i}", "total": Decimal("1400"), "delivery_date": date(2026, 11, 28),
        "today": date(2026, 11, 27), "window_start": 9, "window_end": 14,
    })


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


async def main(n: int, directory: Path) -> None:
    speaker = Speaker(PromptCache(directory, EspeakEngine(), {"ru": "ru", "en": "en-us"}))
    release = getattr(speaker, "release", lambda _u: None)
    for i in range(20):  # warm-up: the name once, units into memory
        release(await speaker.prepare((greeting(i),), "ru"))
        release(await speaker.prepare((readback(5000 + i),), "ru"))
    for label, make in (("greeting", greeting), ("readback", readback)):
        cpu0, kids0, wall0 = time.process_time(), children_cpu(), time.perf_counter()
        for i in range(n):
            release(await speaker.prepare((make(i),), "ru"))
        cpu, kids = time.process_time() - cpu0, children_cpu() - kids0
        wall = time.perf_counter() - wall0
        print(f"{label}: {1000 * cpu / n:.2f} ms CPU in process + {1000 * kids / n:.2f} ms in TTS children "
              f"per prepare (wall {1000 * wall / n:.2f} ms); tts_processes={getattr(speaker, 'tts_processes', 'n/a')}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
