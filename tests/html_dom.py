"""The HTML report's page as a browser's DOM would hold it: every tag's
attributes, each chart <figure>'s SVG (count, <title>s, paths) and the cells
of its data table by column key.  Used by the unit tests of the page and by
the kernel tests that render it in Chromium."""
from __future__ import annotations

from html.parser import HTMLParser

__all__ = ["Dom", "parse"]


class Dom(HTMLParser):
    """What the browser built: every tag's attributes, each figure's SVG
    (count, <title>, paths) and the cells of its data table by column key."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.figures = {}
        self.finding_ids = []
        self._figure = None
        self._text = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "article" and attrs.get("id", "").startswith("finding-"):
            self.finding_ids.append(attrs["id"][len("finding-"):])
        if tag == "figure":
            self._figure = self.figures.setdefault(attrs["id"], {
                "svg": 0, "paths": 0, "titles": [], "keys": [], "rows": [],
                "no_data": "no-data" in attrs.get("class", "")})
        elif self._figure is not None:
            if tag == "svg":
                self._figure["svg"] += 1
            elif tag == "path":
                self._figure["paths"] += 1
            elif tag == "th" and "data-key" in attrs:
                self._figure["keys"].append(attrs["data-key"])
            elif tag == "tr":
                self._figure["rows"].append([])
        self._text = []

    def handle_endtag(self, tag):
        text = "".join(self._text).strip()
        if self._figure is not None:
            if tag == "title":
                self._figure["titles"].append(text)
            elif tag == "td":
                self._figure["rows"][-1].append(text)
            elif tag == "figure":
                self._figure = None
        self._text = []

    def handle_data(self, data):
        self._text.append(data)

    def table(self, chart_id):
        """The chart's first data table as {key: [floats]}."""
        fig = self.figures[chart_id]
        rows = [r for r in fig["rows"] if r]
        width = len(rows[0]) if rows else 0
        keys = fig["keys"][:width]
        return {k: [float(r[i]) if r[i] else float("nan") for r in rows] for i, k in enumerate(keys)}


def parse(text):
    dom = Dom()
    dom.feed(text)
    return dom
