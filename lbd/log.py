"""Structured logging.

Logs are JSON lines on stderr, one object per record, so that ``kubectl logs`` piped to ``jq``
can filter by Service, pool or address. Callers pass domain fields through ``extra``::

    log.info("assigned", extra={"service": "ns/web", "pool": "default", "address": "198.18.100.7"})

Only the fields in :data:`FIELDS` are lifted into the JSON object; anything else in ``extra`` is
ignored rather than dumped, which keeps the schema of the log stable.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FIELDS: tuple[str, ...] = (
    "service",
    "pool",
    "address",
    "node",
    "vip",
    "interface",
    "mac",
    "reason",
    "key",
    "error",
    "duration",
    "count",
    "peer",
)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                obj[name] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, separators=(",", ":"))


def setup(level: str = "info", *, stream: Any = None) -> None:
    """Configure the root logger for JSON output at ``level`` (debug, info, warning, error)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
