"""One place for logs: loguru to stderr, with kazoo's standard-library logging routed into it.

Output meant for the user (tables, results) goes to stdout; logs go to stderr, so a reader
can pipe ``mw status --json`` and still watch a master's reasoning in its log.
"""

from __future__ import annotations

import logging
import sys

from loguru import logger

LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
_json = False


def json_enabled() -> bool:
    """Was --log-json asked for? Then every line on stderr, errors included, must be JSON."""
    return _json


class InterceptHandler(logging.Handler):
    """The handler loguru's documentation gives for standard-library loggers such as kazoo's."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 2
        while frame and frame.f_code.co_filename == logging.__file__:
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def setup_logging(level: str = "INFO", json: bool = False, role: str | None = None) -> None:
    """Configure loguru once per process. ``role`` (master, worker...) prefixes every line.

    Python warnings (kazoo's among them) go through the same sink, so ``--log-json`` leaves no
    plain-text line behind.
    """
    global _json
    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    logger.remove()
    fmt = "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    if role:
        fmt += f"<cyan>{role}</cyan> "
    fmt += "{message}"
    logger.add(sys.stderr, level=level, format=fmt, serialize=json, backtrace=False, diagnose=False)
    _json = json
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    logging.captureWarnings(True)
    # kazoo is chatty at INFO ("Connecting to ..."); its warnings and errors still show.
    kazoo_level = logging.DEBUG if level in ("TRACE", "DEBUG") else logging.WARNING
    logging.getLogger("kazoo").setLevel(kazoo_level)
