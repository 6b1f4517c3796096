"""Open an HTML file in real headless Chromium (Debian's ``chromium``) as a user's browser would.

Two runs of the browser: one prints the DOM after the page's scripts ran (``--dump-dom``), one
takes a screenshot. Both with name resolution disabled (``--host-resolver-rules``), so a page that
needed the network would fail to draw, and with the console logged to stderr, where an uncaught
JavaScript error shows as ``Uncaught``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Rendered:
    dom: str
    console: str  # the browser's stderr (console messages included)
    screenshot: Path


def render(page: Path, workdir: Path, size: str = "1400,2000", budget_ms: int = 8000) -> Rendered:
    exe = chromium()
    assert exe, "no chromium"
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
            f"--virtual-time-budget={budget_ms}", f"--window-size={size}"]
    url = page.resolve().as_uri()
    dom = subprocess.run(base + [f"--user-data-dir={workdir / 'profile-dom'}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=180)
    shot = workdir / "page.png"
    snap = subprocess.run(base + [f"--user-data-dir={workdir / 'profile-shot'}", f"--screenshot={shot}", url],
                          capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0 and snap.returncode == 0, dom.stderr[-2000:] + snap.stderr[-2000:]
    return Rendered(dom.stdout, dom.stderr + snap.stderr, shot)


class _Refs(HTMLParser):
    """Every URL an element of the document points at (script text is not markup: not looked at)."""

    ATTRS = {"src", "href", "srcset", "action", "poster", "data", "xlink:href", "formaction"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str, str]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        for name, value in attrs:
            if name in self.ATTRS and value:
                self.refs.append((tag, name, value))
            if name == "style" and value:
                self.styles.append(value)

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False


def outside_references(html: str) -> list[str]:
    """What in ``html`` would load or link something outside the file: element URLs that are not
    in-page anchors, ``data:`` or ``javascript:``, and CSS ``@import`` / ``url(...)`` to elsewhere."""
    parser = _Refs()
    parser.feed(html)
    found = []
    for tag, name, value in parser.refs:
        v = value.strip().lower()
        if not (v.startswith("#") or v.startswith("data:") or v.startswith("javascript:")):
            found.append(f"<{tag} {name}={value!r}>")
    for css in parser.styles:
        low = css.lower()
        if "@import" in low:
            found.append("@import in a style")
        for part in low.split("url(")[1:]:
            target = part.strip(" '\"")
            if not (target.startswith("#") or target.startswith("data:")):
                found.append(f"url({part[:60]}")
    return found


def check_rendered_report(page: Path, workdir: Path, ranks: tuple[int, ...]) -> None:
    """What a user sees in a browser without network: no script error, the three curve charts
    drawn with a legend entry per rank, and a screenshot showing each rank's curve colour."""
    from PIL import Image

    workdir.mkdir(parents=True, exist_ok=True)
    shown = render(page, workdir)
    assert "Uncaught" not in shown.console, [l for l in shown.console.splitlines() if "Uncaught" in l]
    assert outside_references(shown.dom) == []
    legend = re.findall(r'class="legendtext"[^>]*>([^<]*)<', shown.dom)
    for rank in ranks:
        assert legend.count(f"rank {rank}") == 3, legend  # loss, throughput, step time
    drawn = re.findall(r'class="trace scatter', shown.dom)
    assert len(drawn) >= 3 * len(ranks)
    image = Image.open(shown.screenshot).convert("RGB")
    pixels = image.get_flattened_data() if hasattr(image, "get_flattened_data") else image.getdata()
    counts: dict[tuple[int, int, int], int] = {}
    for p in pixels:
        counts[p] = counts.get(p, 0) + 1
    assert len(counts) > 200, "the screenshot is (nearly) blank"
    # Plotly's first two trace colours: rank 0 and rank 1.
    for colour in [(0x63, 0x6E, 0xFA), (0xEF, 0x55, 0x3B)][:len(ranks)]:
        near = sum(n for c, n in counts.items() if sum(abs(a - b) for a, b in zip(c, colour)) < 60)
        assert near > 500, f"no curve in {colour} on the screenshot ({near} pixels)"
