"""realciao's messages: one logger tree under "realciao", shown by the commands as plain lines.

Library modules log (``LOGGER = logging.getLogger(__name__)``, or Accelerate's ``get_logger``
where only the main process should speak) and never print; a command calls ``show_messages()``
once, so what users see on the terminal reads exactly as plain ``print`` lines did. A training
run's ``train.log`` is one more handler (``log_to_file``), not a tee of stdout.

Where a line goes: a message is shown as its text alone (a ``warning:`` prefix is part of the text);
INFO goes to the command's stream (stdout, or stderr where stdout is its product), WARNING and up to stderr.
"""

from __future__ import annotations

import logging
import sys
from contextlib import nullcontext
from pathlib import Path

ROOT_LOGGER = "realciao"
PLAIN = logging.Formatter("%(message)s")
STREAMS = ("stdout", "stderr")


class TerminalHandler(logging.Handler):
    """Writes each message as one line to whatever ``sys.stdout`` or ``sys.stderr`` is when it
    is emitted (a stream kept from set-up would miss a test's capture or a caller's
    redirection), clearing tqdm's progress bars around the line as ``tqdm.write`` does."""

    def __init__(self, stream: str = "stdout") -> None:
        super().__init__()
        self.stream_name = stream

    def stream_for(self, record: logging.LogRecord):
        return sys.stderr if record.levelno >= logging.WARNING else getattr(sys, self.stream_name)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            stream = self.stream_for(record)
            tqdm = sys.modules.get("tqdm")  # bars exist only where tqdm was imported
            with tqdm.tqdm.external_write_mode(file=stream) if tqdm is not None else nullcontext():
                stream.write(line)
                stream.flush()
        except Exception:
            self.handleError(record)


def show_messages(level: int = logging.INFO, stream: str = "stdout") -> logging.Logger:
    """Show realciao's messages as plain lines, INFO on ``stream`` ("stdout", or "stderr" for a
    command whose stdout is its product) and warnings on stderr. Idempotent: one handler however
    often called; each call sets the level and the stream anew."""
    if stream not in STREAMS:
        raise ValueError(f"show_messages: stream must be one of {', '.join(STREAMS)}, got {stream!r}")
    logger = logging.getLogger(ROOT_LOGGER)
    handler = next((h for h in logger.handlers if isinstance(h, TerminalHandler)), None)
    if handler is None:
        handler = TerminalHandler()
        handler.setFormatter(PLAIN)
        logger.addHandler(handler)
    handler.stream_name = stream
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
