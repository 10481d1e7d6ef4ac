"""The one HTML page writer of realciao's reports (evaluation, recipe fitting, the GT check).

A page stands alone: one file with its style inline, no scripts, fonts or links outside its
folder. Every text and attribute value goes through ``escape``, every file it shows through
``file_link``, so a name with ``<``, ``&``, quotes or spaces reads as written.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

from realciao.files import atomic_write


def escape(text) -> str:
    """``text`` (any value, as ``str``) for a page's text or a quoted attribute."""
    return html.escape(str(text), quote=True)


def file_link(name: str) -> str:
    """A file beside the page (or below it, ``/``-separated) as an attribute value."""
    return escape(quote(name))


def write_page(path: str | Path, title: str, style: str, body: list[str]) -> Path:
    """Write ``path`` atomically (UTF-8): the head with ``title`` and ``style``, then ``body``,
    one part a line; the parts are HTML, escaped by the caller."""
    head = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{style}</style></head><body>",
    ]
    atomic_write(path, "\n".join([*head, *body, "</body></html>"]).encode("utf-8"))
    return Path(path)
