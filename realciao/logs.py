"""realciao's messages: one logger tree under "realciao", shown by the commands as plain lines.

Library modules log (``LOGGER = logging.getLogger(__name__)``, or Accelerate's ``get_logger``
where only the main process should speak) and never print; a command calls ``show_messages()``
once, so what users see on the terminal reads exactly as plain ``print`` lines did. A training
run's ``train.log`` is one more handler (``log_to_file``), not a tee of stdout.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT_LOGGER = "realciao"
PLAIN = logging.Formatter("%(message)s")


class CurrentStdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a message is emitted.

    A handler that kept the stream it saw at set-up would keep writing to a stream a test's
    capture or a caller's redirection has since replaced.
    """

    def __init__(self) -> None:
        super().__init__(stream=sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler assigns it in __init__/setStream; the property wins
        pass


def show_messages(level: int = logging.INFO) -> logging.Logger:
    """Show realciao's messages on stdout as plain lines (idempotent: one handler however often called)."""
    logger = logging.getLogger(ROOT_LOGGER)
    if not any(isinstance(handler, CurrentStdoutHandler) for handler in logger.handlers):
        handler = CurrentStdoutHandler()
        handler.setFormatter(PLAIN)
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # a host application's root handlers would print every line twice
    return logger


def log_to_file(path: str | Path, level: int = logging.INFO) -> logging.Handler:
    """Append realciao's messages to ``path`` as plain lines; returns the handler for ``stop_logging_to``."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(PLAIN)
    handler.setLevel(level)
    logger = logging.getLogger(ROOT_LOGGER)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler


def stop_logging_to(handler: logging.Handler) -> None:
    logging.getLogger(ROOT_LOGGER).removeHandler(handler)
    handler.close()
