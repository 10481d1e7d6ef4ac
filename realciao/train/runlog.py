"""``experiments/NAME/train.log``: what the run was (options, versions, device, world size)
and every message it gave, kept beside its checkpoints.

On the main process the log is a handler on realciao's logger tree (``realciao.logs``), so
each message reaches it as it reaches the terminal. Three more things are kept that are not
messages: a header for each start, fresh or resumed (one log covers the whole run across
resumes); the warnings shown meanwhile (unreadable images, skipped pairs), also where a
caller records them instead of showing them (pytest), and in forked DataLoader workers,
which inherit the hook; and the progress bar's last state, as a terminal shows it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from pathlib import Path

import yaml
from accelerate.logging import MultiProcessAdapter
from tqdm import tqdm

from realciao.logs import log_to_file, stop_logging_to


class ProcessLogger(MultiProcessAdapter):
    """Accelerate's multi-process logger (only the main process speaks unless a call passes
    ``main_process_only=False``) without the "[RANK N]" it puts before every message: lines read
    as they always have; a message every process gives names its rank itself."""

    def process(self, msg, kwargs):
        kwargs.setdefault("stacklevel", 2)
        return msg, kwargs


def get_logger(name: str) -> ProcessLogger:
    """Accelerate's ``get_logger`` for ``name`` (e.g. ``__name__``), as a ``ProcessLogger``."""
    return ProcessLogger(logging.getLogger(name), {})


class ProgressBar(tqdm):
    """A tqdm bar that remembers the text it last drew."""

    shown = ""

    def display(self, msg: str | None = None, pos: int | None = None):
        self.shown = msg if msg is not None else self.__str__()
        return super().display(self.shown, pos)


class RunLog:
    """The log file of one experiment; ``path`` None (processes other than the main one) keeps nothing."""

    def __init__(self, path: Path | None):
        self.handler: logging.Handler | None = None
        self._shown_by = None  # the warnings.showwarning this log wraps, while it does
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.handler = log_to_file(path)

    def line(self, text: str) -> None:
        """A line for train.log alone (not shown on the terminal)."""
        text = text.rstrip()
        if self.handler is not None and text:
            self.handler.handle(
                logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "levelname": "INFO"})
            )

    def header(self, resumed: bool, options: dict, facts: dict[str, str]) -> None:
        """The start of a session: when, fresh or resumed, the facts of the run, the options."""
        rows = [
            f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resumed' if resumed else 'started'} ===",
            *(f"{key}: {value}" for key, value in facts.items()),
            "options:",
            *(f"  {row}" for row in yaml.safe_dump(options, sort_keys=False).splitlines()),
        ]
        self.line("\n".join(rows))

    def keep_warnings(self) -> None:
        """From now on, warnings shown (or recorded) are kept too."""
        if self.handler is None or self._shown_by is not None:
            return
        self._shown_by = warnings.showwarning
        warnings.showwarning = self._show_warning

    def _show_warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        for row in warnings.formatwarning(message, category, filename, lineno, line).splitlines():
            self.line(row)
        self._shown_by(message, category, filename, lineno, file, line)

    @contextlib.contextmanager
    def progress(self, **options):
        """A progress bar on stdout whose last state train.log keeps (messages shown meanwhile
        clear it and draw it again below them: ``realciao.logs``)."""
        bar = ProgressBar(file=sys.stdout, dynamic_ncols=True, **options)
        try:
            yield bar
            bar.close()
        finally:
            self.line(bar.shown)

    def close(self, error: BaseException | None = None) -> None:
        """Stop keeping warnings and close; ``error``: a last line ``error: ...``."""
        if self._shown_by is not None and warnings.showwarning == self._show_warning:
            warnings.showwarning = self._shown_by
        self._shown_by = None
        if error is not None:
            from realciao.errors import RealciaoError

            text = str(error) if isinstance(error, RealciaoError) else f"{type(error).__name__}: {error}"
            self.line(f"error: {' '.join(text.split())}")
        if self.handler is not None:
            stop_logging_to(self.handler)
            self.handler = None


def versions() -> str:
    import accelerate
    import torch

    import realciao

    return f"realciao {realciao.__version__}, torch {torch.__version__}, accelerate {accelerate.__version__}"


def flat_options(options: dict, prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested options as dotted keys with scalar values (what trackers take as hyperparameters)."""
    import json

    flat: dict[str, bool | int | float | str] = {}
    for key, value in options.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not name.startswith("data.augment"):
            flat.update(flat_options(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat
