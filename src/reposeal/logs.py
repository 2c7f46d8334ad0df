"""What the services say: one line per event, with time and level, on stdout (journald
keeps it from there); ``--log-format json`` makes each line a JSON object for log shippers.

    2026-12-01T14:03:07.120Z INFO  repo cycle id=c42 repo=core arch=x86_64 step=publish
    {"time": "2026-12-01T14:03:07.120Z", "level": "info", "component": "repo",
     "event": "cycle", "id": "c42", "repo": "core", "arch": "x86_64", "step": "publish"}

Events name what happened (start, listening, pulling, cycle, job, decision, refused, witness,
error); the fields say about what. Before a service sets the output up, events go to stderr
as text, so library callers and one-shot commands still see them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
_ROOT = "reposeal"


def _time(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def _quoted(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        component = record.name.removeprefix(_ROOT).lstrip(".") or _ROOT
        extra = " ".join(f"{k}={_quoted(v)}" for k, v in _fields(record).items())
        line = f"{_time(record)} {record.levelname:<7} {component} {record.getMessage()}"
        return f"{line} {extra}" if extra else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "component": record.name.removeprefix(_ROOT).lstrip(".") or _ROOT,
            "event": record.getMessage(),
        }
        for key, value in _fields(record).items():
            doc.setdefault(key, value)
        return json.dumps(doc, default=str)


def setup(log_format: str = "text", level: str = "info", stream: Any = None) -> None:
    """Send every event to ``stream`` (stdout) in ``log_format``, from ``level`` up."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: use text or json")
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger(_ROOT)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _ensure() -> None:
    if not logging.getLogger(_ROOT).handlers:
        setup("text", "info", sys.stderr)


def event(component: str, what: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event of ``component`` ("repo", "source", "enclave", "builder", "witness")."""
    _ensure()
    logging.getLogger(f"{_ROOT}.{component}").log(level, what, extra={"fields": fields})


def info(component: str, what: str, **fields: Any) -> None:
    event(component, what, logging.INFO, **fields)


def warning(component: str, what: str, **fields: Any) -> None:
    event(component, what, logging.WARNING, **fields)


def error(component: str, what: str, **fields: Any) -> None:
    event(component, what, logging.ERROR, **fields)
