"""realciao.logs: the commands' messages as plain lines, on the stream each belongs to."""

from __future__ import annotations

import contextlib
import io
import logging
import sys

import pytest
from tqdm import tqdm

from realciao.logs import ROOT_LOGGER, TerminalHandler, log_to_file, show_messages, stop_logging_to

LOGGER = logging.getLogger("realciao.tests")  # a library module's logger, under the tree


def terminal_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger(ROOT_LOGGER).handlers if isinstance(h, TerminalHandler)]


def test_show_messages_is_idempotent():
    for _ in range(3):
        show_messages()
    assert len(terminal_handlers()) == 1


def test_a_message_is_its_plain_line_on_stdout_and_a_warning_goes_to_stderr(capsys):
    show_messages()
    LOGGER.info("3 written, 0 failed")
    LOGGER.warning("warning: bf16 is emulated")
    assert capsys.readouterr() == ("3 written, 0 failed\n", "warning: bf16 is emulated\n")


def test_a_command_whose_stdout_is_its_product_shows_messages_on_stderr(capsys):
    show_messages(stream="stderr")
    LOGGER.info("note: two outputs")
    LOGGER.warning("skipped a.png")
    assert capsys.readouterr() == ("", "note: two outputs\nskipped a.png\n")
    show_messages()  # a later command (or test) gets stdout back
    LOGGER.info("back")
    assert capsys.readouterr().out == "back\n"


def test_the_level_hides_what_is_below_it(capsys):
    show_messages(logging.WARNING)
    LOGGER.info("progress")
    LOGGER.warning("still shown")
    assert capsys.readouterr() == ("", "still shown\n")


def test_lines_go_to_whatever_stdout_is_when_they_are_written():
    show_messages()
    redirected = io.StringIO()
    with contextlib.redirect_stdout(redirected):
        LOGGER.info("into the redirection")
    assert redirected.getvalue() == "into the redirection\n"


def test_an_unknown_stream_is_refused():
    with pytest.raises(ValueError, match="stdout, stderr"):
        show_messages(stream="stdin")


def test_log_to_file_appends_plain_lines_until_stopped(tmp_path, capsys):
    path = tmp_path / "train.log"
    path.write_text("from the first run\n", encoding="utf-8")
    handler = log_to_file(path)
    LOGGER.info("iteration 10")
    LOGGER.warning("warning: non-finite loss")
    stop_logging_to(handler)
    LOGGER.info("after the run")
    assert path.read_text(encoding="utf-8") == "from the first run\niteration 10\nwarning: non-finite loss\n"
    assert handler not in logging.getLogger(ROOT_LOGGER).handlers
    assert capsys.readouterr().out == "iteration 10\nafter the run\n"  # the terminal too, as before


def test_a_host_applications_root_handler_does_not_print_each_line_twice(capsys):
    seen: list[str] = []
    root_handler = logging.Handler()
    root_handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger().addHandler(root_handler)
    try:
        show_messages()
        LOGGER.info("once")
    finally:
        logging.getLogger().removeHandler(root_handler)
    assert logging.getLogger(ROOT_LOGGER).propagate is False
    assert seen == [] and capsys.readouterr().out == "once\n"


def test_a_message_clears_the_progress_bar_before_its_line(capsys):
    show_messages(stream="stderr")
    with tqdm(total=3, desc="images", file=sys.stderr) as bar:
        bar.update(1)
        capsys.readouterr()
        LOGGER.info("note: said mid-run")
    err = capsys.readouterr().err
    before, line, after = err.partition("note: said mid-run\n")
    assert line and before.endswith("\r")  # the bar's line was blanked first
    assert "images" in after  # and drawn again below it
