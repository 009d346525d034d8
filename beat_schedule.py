"""When `celery -A asm beat` runs the scan: plain data."""

from __future__ import annotations

from typing import Any


def beat_schedule(scan_interval: float) -> dict[str, Any]:
    """One scan every ASM_SCAN_INTERVAL seconds; a scan not started by the next one is dropped."""
    return {
        "scan-for-ready-issues": {
            "task": "asm.scan",
            "schedule": scan_interval,
            "options": {"expires": max(scan_interval * 0.9, 1.0)},
        }
    }
