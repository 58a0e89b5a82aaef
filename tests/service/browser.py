"""A real browser for the dashboard tests: Debian's Chromium driven by Playwright (Playwright's
own browser download is not used), the accessibility checks every main page must pass, and
screenshots under ``out/screenshots/`` (gitignored) for a person to look at."""

from __future__ import annotations

import os
from pathlib import Path

from tests.service.conftest import ROOT, unavailable

CHROMIUM = os.environ.get("SIMUDY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = ROOT / "out" / "screenshots"
TAB_PRESSES = 80  # enough to walk every focusable element of the largest page


def launch(playwright):  # noqa: ANN001, ANN201
    if not os.path.exists(CHROMIUM):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def screenshot(page, name: str) -> Path:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page) -> list[str]:  # noqa: ANN001
    """axe-core's WCAG 2 A/AA rules (labels, names, contrast from computed styles, landmarks,
    ARIA), shipped inside the axe-playwright-python wheel."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa",
                                                                             "wcag21a", "wcag21aa"]},
                                       "resultTypes": ["violations"]})
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(n["target"]) for n in v["nodes"][:3])
            for v in results.response["violations"]]


UNLABELLED_CONTROLS = """() => Array.from(document.querySelectorAll('input, select, textarea, button'))
  .filter(el => el.type !== 'hidden' && !el.closest('[hidden]'))
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))"""

FOCUSABLE = """() => Array.from(document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]:not([tabindex="-1"])'))
  .filter(el => !el.disabled && !el.closest('[hidden]') && el.getClientRects().length
                && getComputedStyle(el).visibility !== 'hidden')
  .map(el => el.id || el.outerHTML.slice(0, 80))"""

ACTIVE = """() => { const el = document.activeElement;
  if (!el || el === document.body) return null;
  const r = el.getBoundingClientRect();
  const s = getComputedStyle(el);
  return {name: el.id || el.outerHTML.slice(0, 80), visible: r.width > 0 && r.height > 0,
          outline: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0}; }"""


def keyboard_walk(page) -> list[str]:  # noqa: ANN001
    """Press Tab through the page; return the problems: an element the keyboard cannot reach,
    an order that differs from the reading order, a focused element that is invisible or shows
    no focus outline."""
    expected = page.evaluate(FOCUSABLE)
    page.evaluate("""() => { const start = document.createElement('span');  // Tab from the very top
        start.id = '__walk_start'; start.tabIndex = -1; document.body.prepend(start); start.focus(); }""")
    seen: list[str] = []
    problems: list[str] = []
    for _ in range(min(TAB_PRESSES, len(expected) + 2)):
        page.keyboard.press("Tab")
        active = page.evaluate(ACTIVE)
        if active is None or (seen and active["name"] == seen[0]):
            break
        if not active["visible"]:
            problems.append(f"focused but invisible: {active['name']}")
        if not active["outline"]:
            problems.append(f"no visible focus outline: {active['name']}")
        seen.append(active["name"])
    page.evaluate("() => document.getElementById('__walk_start').remove()")
    if seen != expected[:len(seen)] or len(seen) < len(expected):
        problems.append(f"Tab order {seen} differs from the reading order {expected}")
    return problems


def accessibility_problems(page) -> list[str]:  # noqa: ANN001
    return axe_violations(page) + [f"no label: {h}" for h in page.evaluate(UNLABELLED_CONTROLS)] \
        + keyboard_walk(page)
