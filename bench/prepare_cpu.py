"""CPU per Speaker.prepare() (warm): a greeting and an order read-back, including TTS child processes.

Usage: .venv/bin/python bench/prepare_cpu.py N PROMPTS_DIR  (run `ivr prompts build` into PROMPTS_DIR first).
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

N = int(sys.argv[1])
cust = Customer("C1", "Иванов", "Алексей", "Сергеевич", "ru")
item = Item("W", 4, "бутылка", "воды «Жемчужная роса» 19 л")
def greet(): return PromptRef("greeting_menu", {"customer": cust, "order": (item,)})
def rb(i): return PromptRef("order_placed", {"number": f"A-{1000+i}", "total": Decimal("1400"), "delivery_date": date(2026,11,28), "today": date(2026,11,27), "window_start": 9, "window_end": 14})
async def main():
    d = Path(sys.argv[2])
    sp = Speaker(PromptCache(d, EspeakEngine(), {"ru": "ru", "en": "en-us"}))
    rel = getattr(sp, "release", lambda u: None)
    for i in range(20):  # warm: name, library in memory
        rel(await sp.prepare((greet(),), "ru")); rel(await sp.prepare((rb(5000+i),), "ru"))
    for label, make in (("greeting", lambda i: greet()), ("readback", rb)):
        t0 = time.process_time(); c0 = os.times(); w0 = time.perf_counter()
        for i in range(N):
            u = await sp.prepare((make(i),), "ru"); rel(u)
        cpu = time.process_time() - t0; c1 = os.times(); kids = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
        print(f"{label}: {1000*cpu/N:.2f} ms CPU in-process + {1000*kids/N:.2f} ms in TTS children per prepare (wall {1000*(time.perf_counter()-w0)/N:.2f} ms), tts_processes={getattr(sp,'tts_processes','n/a')}")
asyncio.run(main())
