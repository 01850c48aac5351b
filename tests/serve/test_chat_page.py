"""The chat page in a real headless browser (Playwright driving the system's Chromium): type a
message, see the answer stream in, stop a long one; attach an image on a vision-language model's
server. Skipped where Playwright or Chromium is missing (`pip install playwright` and
`apt-get install chromium`, or LMFORGE_CHROMIUM=/path/to/chrome)."""

import base64
import io
import time

import httpx
import pytest

from lmforge.report.render import find_chromium

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (apt-get install chromium)")
API_KEY = "sk-page"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(served, browser):
    url, _, _ = served
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.fill("#api_key", API_KEY)
    yield page, errors
    page.close()


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


def test_attach_is_hidden_for_a_text_only_model(page):
    page, errors = page
    page.fill("#api_key", API_KEY)
    page.dispatch_event("#api_key", "change")
    page.wait_for_function("document.getElementById('model').textContent.includes('context')", timeout=10_000)
    assert not page.is_visible("#attach") and not errors


def test_an_attached_image_is_sent_and_shown(vl_served, browser, tmp_path):
    """On a vision-language model's server: attach a PNG, see its thumbnail, get the reply the API
    gives for the same image as a data URL."""
    from PIL import Image

    url, _, _, _ = vl_served
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, format="PNG")
    (tmp_path / "red.png").write_bytes(buf.getvalue())
    data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    want = httpx.post(f"{url}/v1/chat/completions", json={
        "model": "tiny-vl", "max_tokens": 6, "temperature": 0,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}},
                                                  {"type": "text", "text": "What colour?"}]}]}).json()
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url + "/")
        page.wait_for_selector("#attach", state="visible", timeout=10_000)
        assert "takes images" in page.inner_text("#model")
        page.set_input_files("#image_file", str(tmp_path / "red.png"))
        page.wait_for_selector("#attachments img.thumb", timeout=10_000)
        page.fill("#max_tokens", "6")
        page.fill("#temperature", "0")
        page.fill("#input", "What colour?")
        page.press("#input", "Enter")
        page.wait_for_function("/length|stop/.test(document.getElementById('status').textContent)",
                               timeout=60_000)
        assert page.get_attribute(".msg.user img.thumb", "src") == data_url
        assert page.inner_text(".msg.user .body") == "What colour?"
        assert page.inner_text(".msg.assistant .body") == want["choices"][0]["message"]["content"]
        assert page.locator("#attachments img").count() == 0 and not errors  # sent, not kept for the next
    finally:
        page.close()
