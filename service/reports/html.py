"""The report as one self-contained HTML page (images and charts inlined as data URIs, styles
inline), rendered by Jinja2 with autoescaping: it opens the same from the API or from a saved
file, and a job's name or recipe can never inject markup."""

from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from service.reports.content import ReportContent, display_width

TEMPLATES = Path(__file__).parent / "templates"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["display_width"] = display_width
    env.filters["data_uri"] = lambda data, mime: f"data:{mime};base64,{base64.b64encode(data).decode()}"
    return env


def render_html(content: ReportContent) -> str:
    charts = [{"title": c.title, "svg": c.draw("svg"), "text": c.text} for c in content.charts]
    return _environment().get_template("report.html").render(r=content, charts=charts)
