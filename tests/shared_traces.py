"""Where the captured Asterisk traces live: a copy in the repository (tests/data/asterisk-traces, taken
from the real Asterisk 22.10.1 captures), or the directory holding ``asterisk-traces`` in $IVR_SHARED_DIR."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("IVR_SHARED_DIR") or Path(__file__).resolve().parent / "data")
TRACES = SHARED / "asterisk-traces"
