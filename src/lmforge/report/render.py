"""Render a static HTML report in headless Chromium and check that it shows what it should.

A report that builds without error can still be wrong when opened: an image whose base64 is
truncated draws as a broken icon, a section is missing, or a script throws. This module opens the
page the way a reader would, in a real browser, and reports what it saw:

- a full-page PNG screenshot, for a person (or a test) to look at;
- the number of images, the ones that failed to decode, and the ``<h2>`` section titles;
- the errors on the page's console (uncaught exceptions, failed loads, ``console.error``).

Report writers embed :data:`CHECK_SCRIPT` at the end of ``<body>``. After the page's ``load``
event it writes what it measured as JSON into ``document.body.dataset.renderCheck``;
:func:`render` reads that attribute back from the DOM that Chromium dumps once scripts have run.
The contract lives here, in one place.

Chromium runs headless, as root in a container with no GPU, no network and no display: every call
gets a fresh temporary profile, and the page is a local file (its images are inline ``data:``
URIs). On Debian: ``apt-get install chromium``; elsewhere set ``LMFORGE_CHROMIUM`` to the binary.

From the shell::

    python -m lmforge.report.render RUN_DIR_OR_HTML [--screenshot out.png] [--require SECTION ...]
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["CHECK_SCRIPT", "check", "find_chromium", "main", "png_size", "render"]

#: Browser binaries tried, in order, on PATH (after the ``LMFORGE_CHROMIUM`` environment variable).
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: The tallest screenshot taken, in CSS pixels; a longer page is cut at this height.
MAX_HEIGHT = 20000

#: The window height of the first (measuring) pass when the screenshot is full-page. Headless
#: Chromium's viewport is shorter than its window, so a small window lets ``scrollHeight`` measure
#: the content rather than the viewport.
_MEASURE_HEIGHT = 400

INSTALL_HINT = ("install Chromium (Debian/Ubuntu: `apt-get install chromium`) or set "
                "LMFORGE_CHROMIUM to a Chromium/Chrome binary")

#: The page side of the render check: embed at the end of ``<body>``. It wraps ``console.error``
#: so later calls are recorded, and after ``load`` sets ``document.body.dataset.renderCheck`` to
#: JSON ``{"images": N, "broken": [alt or src of each image with naturalWidth 0], "sections":
#: [h2 texts], "height": page height in px, "width": page width in px, "errors": [console.error
#: messages]}``. Plain ES5, no dependencies, no network.
CHECK_SCRIPT = """<script>
(function () {
  var errors = [];
  var consoleError = console.error;
  console.error = function () {
    try { errors.push(Array.prototype.map.call(arguments, String).join(" ")); } catch (e) {}
    return consoleError.apply(console, arguments);
  };
  function record() {
    var images = Array.prototype.slice.call(document.images);
    var broken = images.filter(function (im) {
      return !im.complete || im.naturalWidth === 0;
    }).map(function (im) {
      return im.getAttribute("alt") || (im.getAttribute("src") || "").slice(0, 80);
    });
    var sections = Array.prototype.map.call(document.querySelectorAll("h2"), function (h) {
      return h.textContent.replace(/\\s+/g, " ").trim();
    });
    var root = document.documentElement, body = document.body;
    document.body.dataset.renderCheck = JSON.stringify({
      images: images.length, broken: broken, sections: sections,
      height: Math.max(root.scrollHeight, body.scrollHeight),
      width: Math.max(root.scrollWidth, body.scrollWidth),
      errors: errors
    });
  }
  if (document.readyState === "complete") { record(); }
  else { window.addEventListener("load", record); }
})();
</script>"""

# Flags for a headless run as root in a container: no sandbox (root), no GPU, /dev/shm may be
# tiny, no first-run UI, no background network, scrollbars hidden so the page keeps its width.
_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--allow-file-access-from-files",
)

# A console message in Chromium's log, which may span lines:
#   [pid:tid:time:INFO:CONSOLE:LINE] "message", source: URL (LINE)
# (older builds write CONSOLE(LINE)).
_CONSOLE_RE = re.compile(r'^\[[^\]\n]*:CONSOLE[:(]\d*\)?\] "(.*?)", source: (.*?) \((\d+)\)$',
                         re.MULTILINE | re.DOTALL)
# Console messages that are errors. Chromium logs every page console message at INFO, whatever
# its level, so errors are told by their text; console.error calls made after CHECK_SCRIPT ran
# come from the page's own record instead.
_ERROR_RE = re.compile(r"^Uncaught\b|Failed to load resource|^Refused to|^Not allowed to load|"
                       r"^Access to .* blocked|net::ERR_")
# Noise in Chromium's stderr in a container (no D-Bus, no GPU device); left out of error tails.
_NOISE_RE = re.compile(r"dbus|D-Bus|vaapi|drmGetDevices|InitializeSandbox|account_consistency|"
                       r"bluez|Floss|UPower|unexpected operator")


def find_chromium() -> str | None:
    """The headless browser binary: ``$LMFORGE_CHROMIUM``, else the first of
    ``chromium``, ``chromium-browser``, ``google-chrome``, ``google-chrome-stable`` on PATH.

    None when there is none (an ``LMFORGE_CHROMIUM`` that does not name an executable counts as
    none, rather than silently falling back to another browser).
    """
    env = os.environ.get("LMFORGE_CHROMIUM")
    if env:
        found = shutil.which(env)
        return found
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@functools.lru_cache(maxsize=8)
def _version(binary: str) -> str:
    """``binary --version``'s answer, e.g. ``Chromium 150.0.7871.100 built on Debian ...``."""
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if re.search(r"\b\d+\.\d+\.\d+\.\d+\b", line):
            return line.strip()
    return proc.stdout.strip() or "unknown"


def _tail(text: str, lines: int = 25) -> str:
    kept = [line for line in text.splitlines() if line.strip() and not _NOISE_RE.search(line)]
    if not text.strip():
        return "(stderr was empty)"
    return "\n".join(kept[-lines:]) or "(nothing but container noise on stderr)"


def _run(binary: str, args: list[str], html: Path, timeout: float) -> tuple[str, str]:
    """Run Chromium once with a fresh profile; return (stdout, stderr). Raise on failure."""
    with tempfile.TemporaryDirectory(prefix="lmforge-chromium-", ignore_cleanup_errors=True) as tmp:
        cmd = [binary, *_FLAGS, f"--user-data-dir={tmp}", *args, html.as_uri()]
        env = dict(os.environ, HOME=tmp)  # keep crash dumps and caches out of the real home
        # A session of its own, so a timeout takes down Chromium's helper processes too.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", env=env, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise RuntimeError(f"Chromium ({binary}) did not finish rendering {html} within "
                               f"{timeout:g} s; stderr tail:\n{_tail(err)}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"Chromium ({binary}) failed (exit {proc.returncode}) rendering "
                               f"{html}; stderr tail:\n{_tail(err)}\nIf the browser is broken, "
                               f"{INSTALL_HINT}.")
        return out, err


class _BodyAttr(html.parser.HTMLParser):
    """The (unescaped) ``data-render-check`` attribute of ``<body>``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.value: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "body" and self.value is None:
            self.value = dict(attrs).get("data-render-check")


def _page_check(dom: str) -> dict | None:
    parser = _BodyAttr()
    parser.feed(dom)
    parser.close()
    if parser.value is None:
        return None
    try:
        data = json.loads(parser.value)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _console(stderr: str) -> list[str]:
    """Every page console message in Chromium's log, as ``message (source:line)``."""
    return [f"{msg} ({src}:{line})" for msg, src, line in _CONSOLE_RE.findall(stderr)]


def png_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError when the file is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG file ({len(head)} bytes read)")
    return struct.unpack(">II", head[16:24])


def render(html_path: str | os.PathLike, screenshot_path: str | os.PathLike, *, width: int = 1280,
           height: int | None = None, timeout: float = 120) -> dict:
    """Open ``html_path`` in headless Chromium, screenshot it to ``screenshot_path``, and report.

    ``height=None`` takes a full-page screenshot (the page is measured first, then shot with a
    window that tall, at most :data:`MAX_HEIGHT`); a number takes a window of that height.
    ``timeout`` bounds each Chromium run in seconds.

    Returns ``{"screenshot", "width", "height"`` (of the PNG written), ``"images", "broken",
    "sections"`` (from :data:`CHECK_SCRIPT`; 0/[]/[] and ``"page_check": False`` when the page
    has none), ``"console_errors"``, ``"console"`` (every console message), ``"page_height"``,
    ``"expected_size"``, ``"page_check"``, ``"html"``, ``"chromium"`` (its version)``}``.

    Raises FileNotFoundError when the HTML is missing, RuntimeError when no browser is found, when
    Chromium fails or times out, or when it writes no valid PNG.
    """
    html = Path(html_path).resolve()
    shot = Path(screenshot_path).resolve()
    if not html.is_file():
        raise FileNotFoundError(f"no HTML file at {html}")
    binary = find_chromium()
    if binary is None:
        env = os.environ.get("LMFORGE_CHROMIUM")
        tried = (f"LMFORGE_CHROMIUM={env!r} is not an executable" if env else
                 f"tried $LMFORGE_CHROMIUM, then {', '.join(CANDIDATES)} on PATH")
        raise RuntimeError(f"cannot render {html}: no Chromium found ({tried}); {INSTALL_HINT}.")
    shot.parent.mkdir(parents=True, exist_ok=True)
    if shot.exists():
        shot.unlink()  # so a stale file cannot pass for this run's screenshot
    logging = ["--enable-logging=stderr", "--v=0"]

    if height is None:
        # Pass 1 measures the page (and catches its console) at the final width; pass 2 shoots it.
        dom, err = _run(binary, [f"--window-size={width},{_MEASURE_HEIGHT}", *logging,
                                 "--dump-dom"], html, timeout)
        page = _page_check(dom)
        page_height = int(page["height"]) if page and page.get("height") else _MEASURE_HEIGHT
        window_height = max(1, min(page_height, MAX_HEIGHT))
        _run(binary, [f"--window-size={width},{window_height}", f"--screenshot={shot}"], html,
             timeout)
    else:
        window_height = int(height)
        dom, err = _run(binary, [f"--window-size={width},{window_height}", *logging, "--dump-dom",
                                 f"--screenshot={shot}"], html, timeout)
        page = _page_check(dom)
        page_height = int(page["height"]) if page and page.get("height") else None

    if not shot.is_file() or shot.stat().st_size == 0:
        raise RuntimeError(f"Chromium ({binary}) wrote no screenshot of {html} to {shot}; "
                           f"stderr tail:\n{_tail(err)}")
    try:
        png_w, png_h = png_size(shot)
    except ValueError as exc:
        raise RuntimeError(f"Chromium's screenshot of {html} is not a valid PNG: {exc}") from None

    console = _console(err)
    errors = [c for c in console if _ERROR_RE.search(c)]
    for msg in map(str, (page or {}).get("errors", [])):  # console.error calls, by the page
        if not any(e.startswith(msg) for e in errors):
            logged = [c for c in console if c.startswith(msg + " (")]
            errors.append(f"console.error: {logged[0] if logged else msg}")
    return {
        "screenshot": str(shot),
        "width": png_w,
        "height": png_h,
        "expected_size": [width, window_height],
        "page_height": page_height,
        "images": int(page.get("images", 0)) if page else 0,
        "broken": list(page.get("broken", [])) if page else [],
        "sections": list(page.get("sections", [])) if page else [],
        "console_errors": errors,
        "console": console,
        "page_check": page is not None,
        "html": str(html),
        "chromium": _version(binary),
    }


def check(result: dict, required_sections: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The problems in a :func:`render` result; an empty list when the page looks right.

    Flags: no render-check data (CHECK_SCRIPT missing or it failed), a screenshot of the wrong
    size, no images at all, broken images, console errors, and each of ``required_sections``
    that is not an ``<h2>`` title (matched case-insensitively, as a prefix, so ``"Training"``
    matches ``"Training loss"``).
    """
    problems = []
    if not result.get("page_check", True):
        problems.append("the page has no render-check data: embed lmforge.report.render."
                        "CHECK_SCRIPT at the end of <body> (or a script before it failed)")
    expected = result.get("expected_size")
    if expected and [result.get("width"), result.get("height")] != list(expected):
        problems.append(f"screenshot is {result.get('width')}x{result.get('height')} px, "
                        f"expected {expected[0]}x{expected[1]}")
    if result.get("page_height") and result["page_height"] > MAX_HEIGHT:
        problems.append(f"page is {result['page_height']} px tall; the screenshot stops at "
                        f"{MAX_HEIGHT} px")
    if result.get("page_check", True) and not result.get("images"):
        problems.append("the page has no images")
    for img in result.get("broken", []):
        problems.append(f"broken image: {img}")
    for err in result.get("console_errors", []):
        problems.append(f"console error: {err}")
    titles = [s.strip().lower() for s in result.get("sections", [])]
    for section in required_sections:
        want = section.strip().lower()
        if not any(t.startswith(want) for t in titles):
            problems.append(f"missing section: {section!r} (sections: {result.get('sections')})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lmforge.report.render",
        description="Open a run's report.html in headless Chromium, write a full-page PNG "
                    "screenshot, and check the page: images that fail to decode, missing <h2> "
                    "sections, console errors, no images at all. Exit status: 0 when the page "
                    "looks right, 1 when problems were found, 2 when it could not be rendered "
                    "(no Chromium: `apt-get install chromium`, or set LMFORGE_CHROMIUM).")
    parser.add_argument("path",
                        help="a run directory (its report.html is rendered) or an .html file")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="where to write the screenshot (default: report.png beside the HTML)")
    parser.add_argument("--require", metavar="SECTION", nargs="+", action="extend", default=[],
                        help="<h2> section titles that must be present (case-insensitive prefix "
                             "match); may be repeated; give PATH before it")
    parser.add_argument("--width", type=int, default=1280, help="window width in px (default 1280)")
    parser.add_argument("--height", type=int, default=None,
                        help="window height in px (default: the full page, up to "
                             f"{MAX_HEIGHT} px)")
    parser.add_argument("--timeout", type=float, default=120,
                        help="seconds allowed for each Chromium run (default 120)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    path = Path(args.path)
    html = path / "report.html" if path.is_dir() else path
    shot = Path(args.screenshot) if args.screenshot else html.parent / "report.png"
    try:
        result = render(html, shot, width=args.width, height=args.height, timeout=args.timeout)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = check(result, args.require)
    if args.json:
        print(json.dumps({**result, "problems": problems}, indent=2))
    else:
        print(f"rendered   {result['html']}")
        print(f"browser    {result['chromium']}")
        print(f"screenshot {result['screenshot']} ({result['width']}x{result['height']} px)")
        print(f"images     {result['images']} ({len(result['broken'])} broken)")
        print(f"sections   {', '.join(result['sections']) or '(none)'}")
        print(f"console    {len(result['console'])} messages, "
              f"{len(result['console_errors'])} errors")
        if problems:
            print(f"{len(problems)} problem(s):")
            for p in problems:
                print(f"  - {p}")
        else:
            print("ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
