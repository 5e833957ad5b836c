"""Structured logs for the annotation server: one JSON object per line.

The server never passes a token or a session id to a logger; as a second line
of defence every record (message, arguments and extra fields) goes through a
filter that masks anything shaped like a synth token before it is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

TOKEN_SHAPE = re.compile(r"syn_[A-Za-z0-9_.\-]{6,}")
"""`syn_<key id>.<secret>` (and the older `syn_<secret>`) whole: the `.` is in
the class so that the secret after the key id is masked too."""
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


def redact(text: str) -> str:
    return TOKEN_SHAPE.sub("syn_[redacted]", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return redact(json.dumps(out, default=str, ensure_ascii=False))


def setup(level: str = "info") -> None:
    """JSON lines on stderr for our loggers and uvicorn's, tokens masked."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactTokens())
    for name in ("synth.annotate", "uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(level.upper())
        lg.propagate = False
