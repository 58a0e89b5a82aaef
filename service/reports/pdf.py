"""The report as a PDF, drawn by fpdf2 (a pure-Python wheel: no system library) from the same
content as the HTML. Text uses the DejaVu fonts that matplotlib ships, embedded and subset, so
any character of a job name or recipe prints and the text can be searched and copied."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from service.reports.content import ReportContent

FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
INK, MUTED = (27, 31, 36), (87, 96, 106)
FINDING_COLOURS = {"high": (164, 14, 38), "some": (154, 79, 0), "failed": (87, 96, 106),
                   "cancelled": (87, 96, 106)}
DEFAULT_BAR = (11, 92, 173)


class _Report(FPDF):
    def __init__(self, content: ReportContent) -> None:
        super().__init__(format="A4", unit="mm")
        self.content = content
        self.set_margins(15, 14, 15)
        self.set_auto_page_break(True, margin=14)
        self.add_font("DejaVu", "", FONTS / "DejaVuSans.ttf")
        self.add_font("DejaVu", "B", FONTS / "DejaVuSans-Bold.ttf")
        self.add_font("DejaVuMono", "", FONTS / "DejaVuSansMono.ttf")
        title = f"Memorisation audit: {content.job_name or content.job_id}"
        self.set_title(title)
        self.set_creator(f"simudy {content.version}")
        self.set_creation_date(content.generated_at or datetime.now().astimezone())

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("DejaVu", size=7)
        self.set_text_color(*MUTED)
        c = self.content
        self.cell(0, 4, f"simudy {c.version} · commit {c.commit[:12]} · job {c.job_id} · page {self.page_no()}",
                  align="C")

    # -- pieces ----------------------------------------------------------------------------------
    def heading(self, text: str, keep_with: float = 20) -> None:
        """A section title; a new page first when less than ``keep_with`` mm would follow it."""
        if self.get_y() + 10 + keep_with > self.h - self.b_margin:
            self.add_page()
        self.ln(2)
        self.set_font("DejaVu", "B", 11)
        self.set_text_color(*INK)
        self.cell(0, 6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(208, 215, 222)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(1.5)

    def para(self, text: str, size: float = 9, bold: bool = False, colour: tuple = INK) -> None:
        self.set_font("DejaVu", "B" if bold else "", size)
        self.set_text_color(*colour)
        self.multi_cell(0, size * 0.5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def facts(self, rows: list[tuple[str, str]], label_width: float = 45) -> None:
        for label, value in rows:
            self.set_font("DejaVu", "B", 8.5)
            self.set_text_color(*INK)
            self.cell(label_width, 4.6, label)
            self.set_font("DejaVu", "", 8.5)
            self.multi_cell(0, 4.6, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def mono_columns(self, blocks: list[tuple[str, str]], size: float = 6.5) -> None:
        """Titled monospace blocks side by side (the recipe and the settings)."""
        gap = 6
        width = (self.epw - gap * (len(blocks) - 1)) / len(blocks)
        top, bottom = self.get_y(), self.get_y()
        for k, (title, text) in enumerate(blocks):
            x = self.l_margin + k * (width + gap)
            self.set_xy(x, top)
            self.set_font("DejaVu", "B", 9)
            self.set_text_color(*INK)
            self.cell(width, 5, title, new_x=XPos.LEFT, new_y=YPos.NEXT)
            self.set_font("DejaVuMono", "", size)
            self.multi_cell(width, size * 0.45, text, align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
            bottom = max(bottom, self.get_y())
        self.set_xy(self.l_margin, bottom)

    def picture(self, png: bytes, width: float) -> None:
        self.image(io.BytesIO(png), w=width, x=self.l_margin)
        self.ln(1)

    def charts(self, charts: list) -> None:  # noqa: ANN001
        """Two charts a row, each titled, with its text alternative below."""
        width = (self.epw - 6) / 2
        for row in range(0, len(charts), 2):
            pair = charts[row:row + 2]
            images = [c.draw("png") for c in pair]
            heights = [width * im_h / im_w for im_w, im_h in (_size(png) for png in images)]
            needed = 8 + max(heights) + 8
            if self.get_y() + needed > self.h - self.b_margin:
                self.add_page()
            top = self.get_y()
            bottom = top
            for k, (chart, png) in enumerate(zip(pair, images)):
                x = self.l_margin + k * (width + 6)
                self.set_xy(x, top)
                self.set_font("DejaVu", "B", 9)
                self.set_text_color(*INK)
                self.cell(width, 5, chart.title, new_x=XPos.LEFT, new_y=YPos.NEXT)
                self.image(io.BytesIO(png), x=x, y=self.get_y(), w=width)
                self.set_xy(x, self.get_y() + heights[k] + 1)
                self.set_font("DejaVu", "", 6.5)
                self.set_text_color(*MUTED)
                self.multi_cell(width, 3, chart.text, align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
                bottom = max(bottom, self.get_y())
            self.set_xy(self.l_margin, bottom + 2)


def _size(png: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(png)).size


def render_pdf(content: ReportContent) -> bytes:
    pdf = _Report(content)
    pdf.add_page()
    c = content
    pdf.para(f"Memorisation audit: {c.job_name or 'job ' + c.job_id}", size=15, bold=True)
    when = c.created_at.strftime("%Y-%m-%d %H:%M UTC")
    pdf.para(f"Job {c.job_id} · {c.status} · submitted {when}", size=8.5, colour=MUTED)
    pdf.ln(2)

    colour = FINDING_COLOURS.get(c.finding.level, DEFAULT_BAR)
    top = pdf.get_y()
    margin = pdf.l_margin
    pdf.set_left_margin(margin + 4)  # the finding's text, right of its coloured bar
    pdf.set_x(margin + 4)
    pdf.para(c.finding.headline, size=11, bold=True)
    if c.finding.detail:
        pdf.para(c.finding.detail, size=9)
    if c.finding.caveat:
        pdf.para(c.finding.caveat, size=8, colour=MUTED)
    pdf.set_left_margin(margin)
    pdf.set_fill_color(*colour)
    pdf.rect(margin, top, 1.6, pdf.get_y() - top, style="F")

    if c.scores:
        pdf.heading("Scores")
        pdf.facts(c.scores, 60)
    if c.pairs_png:
        pdf.heading("Best pairs (reconstruction above the training image it matches, best first)", 40)
        pdf.picture(c.pairs_png, min(pdf.epw, 18 * max(1, min(len(c.best_pairs), 10))))
    elif c.grid_png:
        pdf.heading("Reconstruction", 40)
        pdf.picture(c.grid_png, min(pdf.epw, 120))

    pdf.heading("The audited model")
    pdf.facts([(role, f"sha256 {sha}\n{name}") for role, sha, name in c.fingerprints], 45)
    pdf.heading("Training recipe and method", keep_with=40)
    pdf.mono_columns([("Recipe", c.recipe_json()), (f"Method: {c.method}", c.settings_json())])
    pdf.heading("Run")
    pdf.facts(c.run_facts)
    pdf.charts(c.charts)
    pdf.heading("Provenance", keep_with=8)
    pdf.para(f"simudy {c.version}, commit {c.commit}; report made "
             f"{(c.generated_at or datetime.now()).strftime('%Y-%m-%d %H:%M UTC')}.", size=8.5)
    return bytes(pdf.output())
