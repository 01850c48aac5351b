"""The chat page in a real headless browser (Playwright driving the system's Chromium): type a
message, see the answer stream in, stop a long one. Skipped where Playwright or Chromium is missing
(`pip install playwright` and `apt-get install chromium`, or LMFORGE_CHROMIUM=/path/to/chrome)."""

import time

import pytest

from lmforge.report.render import find_chromium

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (apt-get install chromium)")
API_KEY = "sk-page"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def page(served):
    url, _, _ = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=FLAGS, headless=True)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.fill("#api_key", API_KEY)
        yield page, errors
        browser.close()


@pytest.fixture
def paced(served, monkeypatch):
    """Steps at least 20 ms apart, whatever the machine: the answer streams visibly and Stop meets it
    running."""
    _, runner, _ = served
    step = runner.engine.step

    def slow_step():
        time.sleep(0.02)
        return step()

    monkeypatch.setattr(runner.engine, "step", slow_step)
    return runner


def test_a_message_gets_a_streamed_answer(page, paced):
    page, errors = page
    page.fill("#max_tokens", "24")
    page.fill("#temperature", "0")
    # Count how many times the answer's text changes while it streams.
    page.evaluate("""() => { window.updates = 0; new MutationObserver(() => window.updates++)
        .observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true}); }""")
    page.fill("#input", "Hello, who are you?")
    page.press("#input", "Enter")
    page.wait_for_function("document.getElementById('status').textContent.includes('length')", timeout=60_000)
    assert page.inner_text(".msg.user .body") == "Hello, who are you?"
    answer = page.inner_text(".msg.assistant .body")
    assert answer.strip() and page.evaluate("window.updates") > 5  # token by token, not all at once
    assert "tiny" in page.inner_text("#model") and not errors
    assert page.is_enabled("#send") and not page.is_enabled("#stop")


def test_stop_button_ends_a_long_answer(page, paced):
    page, errors = page
    runner = paced
    page.click("#clear")  # a new conversation: the page keeps the old one otherwise
    page.fill("#temperature", "1")
    page.fill("#max_tokens", "200")
    page.fill("#input", "Tell me everything.")
    page.press("#input", "Enter")
    page.wait_for_function("document.querySelector('.msg.assistant .body')?.textContent.length > 0", timeout=60_000)
    page.click("#stop")
    page.wait_for_function("document.getElementById('status').textContent === 'stopped'", timeout=10_000)
    deadline = time.monotonic() + 10
    while runner.engine.running and time.monotonic() < deadline:  # the server cancelled the request
        time.sleep(0.05)
    assert not runner.engine.running and runner.engine.kv_blocks_used == 0 and not errors
