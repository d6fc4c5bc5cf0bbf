"""Where the captured Asterisk traces live: ../shared beside the checkout (also in CI), or $IVR_SHARED_DIR."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("IVR_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
TRACES = SHARED / "asterisk-traces"
