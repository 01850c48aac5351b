"""Images in `lmforge serve` chat requests, through the official `openai` client and raw HTTP: the
reply to an image is a cacheless greedy loop's over the InternVL embeddings and V2PE positions; data
URLs, local files under --image-root and (when allowed) remote URLs; every bad image a 400 naming
the message part, never a crash; a text-only model refuses images."""

import base64
import functools
import http.server
import io
import json
import threading

import httpx
import pytest
import torch

openai = pytest.importorskip("openai")
Image = pytest.importorskip("PIL.Image")
API_KEY = "sk-none"  # of the text-only server (conftest's `served`)


def _client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)


def _png(width=64, height=64, seed=0, fmt="PNG") -> bytes:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def _data_url(data: bytes, kind="png") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(data).decode()


def _message(url: str, text="What is in the picture?"):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


def _reference(folder, tok, images: list[bytes], text: str, max_tokens: int) -> tuple[str, int, int]:
    """(reply, prompt tokens, reply tokens) of greedy decoding by recomputing the whole sequence at
    every step over InternVL's spliced embeddings and V2PE positions (delta 1/4)."""
    from lmforge.model.vision import load_vl_model, v2pe_position_ids
    from lmforge.tokenizer.special import IMG_CONTEXT, IMG_END, IMG_START
    from lmforge.vl.images import load_image
    from lmforge.vl.tiling import pixel_values

    model = load_vl_model(folder)
    tiles = [pixel_values(load_image(b), 64, 4) for b in images]
    content = "".join(f"{IMG_START}{IMG_CONTEXT * (len(t) * 16)}{IMG_END}\n" for t in tiles) + text
    prompt = tok.encode_chat([{"role": "user", "content": content}], add_generation_prompt=True)
    ids = torch.tensor([prompt])
    lm, out = model.language_model, []
    with torch.no_grad():
        embeds = model.embed(ids, torch.cat(tiles))[0]
        positions = v2pe_position_ids(ids, model.cfg.image_token_id, 0.25)[0]
        assert positions[-1] < len(prompt) - 1  # V2PE: the image tokens took less than one position each
        for _ in range(max_tokens):
            h = torch.cat([embeds, lm.tok_embeddings(torch.tensor(out, dtype=torch.long))])
            p = torch.cat([positions, positions[-1] + 1 + torch.arange(len(out), dtype=torch.float32)])
            token = int(lm.logits(lm.forward_hidden(inputs_embeds=h[None], position_ids=p[None])[0, -1]).argmax())
            if token in tok.stop_ids:
                break
            out.append(token)
    return tok.decode(out), len(prompt), len(out)


def test_a_data_url_image_gets_the_reference_reply(vl_served, vl_checkpoint):
    url, runner, _, _ = vl_served
    image = _png(128, 64, seed=1)  # 2 x 1 tiles and a thumbnail: 48 image tokens
    r = _client(url).chat.completions.create(model="tiny-vl", messages=_message(_data_url(image)), max_tokens=8,
                                             temperature=0)
    text, n_prompt, n_reply = _reference(*vl_checkpoint, [image], "What is in the picture?", 8)
    assert r.choices[0].message.content == text
    assert r.usage.prompt_tokens == n_prompt and r.usage.completion_tokens == n_reply
    assert _reference(*vl_checkpoint, [_png(128, 64, seed=9)], "What is in the picture?", 8)[0] != text  # sees it
    assert runner.engine.stats.prefix_hit_tokens == 0  # image prompts never share cached blocks


def test_two_images_streamed_and_text_only_requests_alongside(vl_served, vl_checkpoint):
    url, runner, _, _ = vl_served
    client = _client(url)
    a, b = _png(64, 64, seed=2), _png(64, 128, seed=3)
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": _data_url(a)}},
                                             {"type": "image_url", "image_url": {"url": _data_url(b)}},
                                             {"type": "text", "text": "Compare them."}]}]
    results = {}

    def ask(name, **kw):
        results[name] = client.chat.completions.create(model="tiny-vl", max_tokens=6, temperature=0, **kw)

    threads = [threading.Thread(target=ask, args=("text",), kwargs={"messages": [{"role": "user", "content": "Hi"}]}),
               threading.Thread(target=ask, args=("images",), kwargs={"messages": messages})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["images"].choices[0].message.content == _reference(*vl_checkpoint, [a, b], "Compare them.", 6)[0]
    chunks = list(client.chat.completions.create(model="tiny-vl", messages=messages, max_tokens=6, temperature=0,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        results["images"].choices[0].message.content
    assert results["text"].choices[0].message.content is not None and runner.alive


def test_local_files_under_the_image_root_only(vl_served, monkeypatch, tmp_path):
    url, _, policy, root = vl_served
    client = _client(url)
    image = _png(64, 64, seed=4)
    (root / "cat.png").write_bytes(image)
    kw = dict(model="tiny-vl", max_tokens=5, temperature=0)
    want = client.chat.completions.create(messages=_message(_data_url(image)), **kw).choices[0].message.content
    for ref in ("cat.png", str(root / "cat.png"), (root / "cat.png").as_uri()):
        assert client.chat.completions.create(messages=_message(ref), **kw).choices[0].message.content == want
    (tmp_path / "secret.png").write_bytes(image)
    outside = tmp_path / "secret.png"
    (root / "link.png").symlink_to(outside)
    for ref in (str(outside), f"../{tmp_path.name}/secret.png", outside.as_uri(), "link.png"):
        assert "outside the server's image root" in _post_error(url, _message(ref))["message"]
    assert "no such image file" in _post_error(url, _message("nothing.png"))["message"]
    monkeypatch.setattr(policy, "image_root", None)  # the default: no local files at all
    error = _post_error(url, _message("cat.png"))
    assert "--image-root" in error["message"] and error["param"] == "messages.0.content.0"


def _post_error(url, messages, status=400, **extra) -> dict:
    r = httpx.post(f"{url}/v1/chat/completions", json={"model": "tiny-vl", "messages": messages, "max_tokens": 4,
                                                      **extra})
    assert r.status_code == status, r.text
    return r.json()["error"]


@pytest.fixture
def image_site(tmp_path):
    """A local HTTP server of tmp_path's files: (base url)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_remote_urls_only_when_allowed_and_within_the_size_limit(vl_served, image_site, monkeypatch):
    url, _, policy, _ = vl_served
    site, folder = image_site
    image = _png(64, 64, seed=5)
    (folder / "dog.png").write_bytes(image)
    error = _post_error(url, _message(f"{site}/dog.png"))
    assert "--allow-remote-images" in error["message"] and error["code"] == "invalid_image"
    monkeypatch.setattr(policy, "allow_remote", True)
    client = _client(url)
    kw = dict(model="tiny-vl", max_tokens=5, temperature=0)
    assert client.chat.completions.create(messages=_message(f"{site}/dog.png"), **kw).choices[0].message.content == \
        client.chat.completions.create(messages=_message(_data_url(image)), **kw).choices[0].message.content
    assert "cannot fetch" in _post_error(url, _message(f"{site}/missing.png"))["message"]
    monkeypatch.setattr(policy, "max_image_bytes", len(image) - 1)
    assert "over the limit" in _post_error(url, _message(f"{site}/dog.png"))["message"]


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    return buf.getvalue()


def _parts(*parts):
    return [{"role": "user", "content": list(parts)}]


def _img(url):
    return {"type": "image_url", "image_url": {"url": url}}


_TEXT = {"type": "text", "text": "what is it?"}


@pytest.mark.parametrize("messages, param, words", [
    (_message(_data_url(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)), "messages.0.content.0", "cannot decode"),
    (_message("data:image/png;base64,@@not base64@@"), "messages.0.content.0", "base64"),
    (_message("data:text/plain;base64,aGVsbG8="), "messages.0.content.0", "data URL"),
    (_message(_data_url(_tiff(), "tiff")), "messages.0.content.0", "unsupported image format"),
    (_parts(_TEXT, _img(_data_url(_png())), _img(_data_url(_png())), _img(_data_url(_png()))),
     "messages.0.content.3", "more than 2 images"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [_img(_data_url(_png()))]}],
     "messages.1.content.0", "user messages only"),
    (_parts({"type": "text", "text": "<IMG_CONTEXT> sneaky"}), "messages.0.content.0", "image markers"),
    (_parts({"type": "input_audio", "input_audio": {}}), "messages.0.content.0", "content part of type"),
    (_parts({"type": "image_url", "image_url": {}}), "messages.0.content.0", "image_url part needs"),
    (_message("ftp://example.com/a.png"), "messages.0.content.0", "unsupported image URL scheme"),
])
def test_bad_images_are_400_naming_the_part(vl_served, messages, param, words):
    url, runner, _, _ = vl_served
    error = _post_error(url, messages)
    assert error["param"] == param and words in error["message"] and error["type"] == "invalid_request_error"
    assert runner.alive


def test_an_image_over_the_byte_limit_is_400(vl_served, monkeypatch):
    url, runner, policy, _ = vl_served
    image = _png(64, 64, seed=7)
    monkeypatch.setattr(policy, "max_image_bytes", len(image) // 2)
    error = _post_error(url, _message(_data_url(image)))
    assert "over the limit" in error["message"] and error["param"] == "messages.0.content.0" and runner.alive


def test_an_image_too_large_for_the_context_is_400(vl_served, monkeypatch):
    url, _, policy, _ = vl_served
    monkeypatch.setattr(policy, "max_tiles", 12)  # a 4:3 image: 12 tiles + a thumbnail = 208 tokens
    image = _png(256, 192, seed=6)
    error = _post_error(url, _parts(_img(_data_url(image)), _img(_data_url(image)), _TEXT))
    assert error["code"] == "context_length_exceeded"


def test_models_say_which_inputs_the_model_takes(vl_served, served):
    assert httpx.get(f"{vl_served[0]}/v1/models").json()["data"][0]["input_modalities"] == ["text", "image"]
    url, runner, _ = served
    models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert models["data"][0]["input_modalities"] == ["text"]



def test_a_text_only_model_refuses_images(served):
    url, runner, _ = served
    r = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"model": "tiny", "messages": _parts(_TEXT, _img(_data_url(_png()))), "max_tokens": 4})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages.0.content.1"
    assert "text only" in r.json()["error"]["message"] and r.json()["error"]["code"] == "images_not_supported"
    ok = httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                    json={"model": "tiny", "messages": _parts(_TEXT, {"type": "text", "text": " ok"}), "max_tokens": 2})
    assert ok.status_code == 200 and runner.alive
    json.dumps(ok.json())
