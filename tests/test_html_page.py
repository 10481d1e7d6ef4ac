"""realciao.html_page: one standalone page, every text escaped one way."""

from __future__ import annotations

from html.parser import HTMLParser

from realciao.html_page import escape, file_link, write_page


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.text: list[str] = []
        self.attrs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def test_names_with_markup_and_quotes_read_as_written(tmp_path):
    name = "a <b> & 'c' \"d\".png"
    path = write_page(
        tmp_path / "index.html",
        "t <1>",
        "p{margin:0}",
        [f"<p>{escape(name)}</p>", f"<img src='{file_link('crops/' + name)}' alt='{escape(name)}'>"],
    )
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html><html><head><meta charset='utf-8'><title>t &lt;1&gt;</title>")
    assert text.endswith("</body></html>") and "<style>p{margin:0}</style>" in text
    page = _Page()
    page.feed(text)
    assert name in page.text and ("alt", name) in page.attrs
    assert (
        "src",
        "crops/a%20%3Cb%3E%20%26%20%27c%27%20%22d%22.png",
    ) in page.attrs  # a relative URL, no quote left
    assert escape(3.5) == "3.5"
