"""realciao.app.model_thread: the app's model calls, made from Gradio's threads, run on the one
thread that loaded the models (one OpenMP team; see the module's docstring for the figures)."""

from __future__ import annotations

import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from realciao.app.model_thread import ModelThread, call_here

REQUEST = contextvars.ContextVar("request", default=None)


def serving(model_thread: ModelThread, work) -> list:
    """Run ``work(model_thread)`` on other threads while this thread serves; returns their results."""
    done = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(work, model_thread, index) for index in range(2)]
        watcher = threading.Thread(target=lambda: ([f.exception() for f in futures], done.set()))
        watcher.start()
        model_thread.serve(until=done)
        watcher.join()
    return [future.result() for future in futures]


def test_calls_from_other_threads_run_on_the_owner_and_return_there():
    model_thread = ModelThread()

    def work(model_thread, index):
        assert threading.current_thread() is not model_thread.owner
        return model_thread(lambda x: (threading.get_ident(), x * 10), index)

    results = serving(model_thread, work)
    assert results == [(threading.get_ident(), 0), (threading.get_ident(), 10)]


def test_an_error_reaches_its_caller_and_the_owner_goes_on():
    model_thread = ModelThread()

    def fails(index):
        raise ValueError(f"photo {index}: unreadable")

    def work(model_thread, index):
        if index == 0:
            with pytest.raises(ValueError, match="photo 0: unreadable"):
                model_thread(fails, index)
            return "refused"
        return model_thread(str, index)

    assert serving(model_thread, work) == ["refused", "1"]


def test_the_callers_context_goes_with_the_call():
    """Gradio finds a request's progress bar in context variables set on its own thread."""
    model_thread = ModelThread()

    def work(model_thread, index):
        REQUEST.set(f"request {index}")
        return model_thread(REQUEST.get)

    assert serving(model_thread, work) == ["request 0", "request 1"]
    assert REQUEST.get() is None  # the owner's own context is left as it was


def test_the_owner_calls_directly_and_only_the_owner_serves():
    model_thread = ModelThread()
    assert model_thread(threading.get_ident) == threading.get_ident()
    assert call_here(threading.get_ident) == threading.get_ident()
    errors = []
    other = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, model_thread.serve)))
    other.start()
    other.join()
    assert errors and "thread that created it" in str(errors[0].value)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc (Linux)")
def test_torch_work_from_other_threads_starts_no_new_team_of_threads():
    """The reason for the module: parallel torch work started on a new thread adds that thread's
    own OpenMP team; handed to the model thread, it adds none."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        big = torch.rand(512, 512)
        big @ big  # this thread's team exists before counting
        model_thread = ModelThread()
        grown = {}
        for name, run in (("handed", model_thread), ("direct", call_here)):
            counted, stay = threading.Event(), threading.Event()

            def work(run=run, counted=counted, stay=stay, name=name):
                before = thread_count()
                run(lambda: big @ big)
                grown[name] = thread_count() - before
                counted.set()
                stay.wait(timeout=60)  # a team lives while its thread does

            worker = threading.Thread(target=work)
            worker.start()
            model_thread.serve(until=counted)
            stay.set()
            worker.join()
        assert grown == {"handed": 0, "direct": 1}
    finally:
        torch.set_num_threads(previous)
