"""A small, realistic demo data set (bottled-water delivery) loaded through the real importers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crm_bridge.importers import ImportReport, import_file

DEMO_DIR = Path(__file__).resolve().parent / "demo"
# Order matters: orders refer to customers and products.
FILES = (("products", "products.csv"), ("customers", "customers.csv"), ("orders", "orders.csv"))


async def load_demo_data(sessions: Any) -> ImportReport:
    """Load (or re-load: idempotent) the demo files. ``sessions``: async_sessionmaker or CrmStore."""
    report = ImportReport(kind="demo")
    for kind, name in FILES:
        report = report.merge(await import_file(sessions, kind, DEMO_DIR / name))  # type: ignore[arg-type]
    report.kind = "demo"
    return report
