"""The InternLM2 chat format: plain-Python rendering equals the published Jinja template."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmforge.tokenizer import INTERNLM2_CHAT_TEMPLATE, Tokenizer, render_chat

MESSAGES = [
    {"role": "system", "content": "You are InternLM2, a helpful assistant."},
    {"role": "user", "content": "你好！What is 12+30?"},
    {"role": "assistant", "content": "42。"},
    {"role": "user", "content": "  spaces\nand lines  "},
]

EXPECTED = (
    "<s><|im_start|>system\nYou are InternLM2, a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n你好！What is 12+30?<|im_end|>\n"
    "<|im_start|>assistant\n42。<|im_end|>\n"
    "<|im_start|>user\n  spaces\nand lines  <|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_template_is_the_published_one() -> None:
    assert INTERNLM2_CHAT_TEMPLATE == (
        "{{ bos_token }}{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' "
        "+ message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )


def test_render_chat_exact_string(tok: Tokenizer) -> None:
    assert tok.render_chat(MESSAGES) == EXPECTED
    assert render_chat(MESSAGES) == EXPECTED
    without_prompt = tok.render_chat(MESSAGES, add_generation_prompt=False)
    assert without_prompt == EXPECTED.removesuffix("<|im_start|>assistant\n")
    assert tok.render_chat([]) == "<s><|im_start|>assistant\n"


def test_encode_chat(tok: Tokenizer) -> None:
    ids = tok.encode_chat(MESSAGES)
    assert ids == tok.encode(EXPECTED)
    assert ids[:2] == [tok.bos_id, tok.token_to_id("<|im_start|>")]
    assert ids.count(tok.bos_id) == 1  # the template's <s>, no second one
    assert tok.decode(ids) == EXPECTED


def test_render_matches_jinja(tok: Tokenizer) -> None:
    jinja2 = pytest.importorskip("jinja2")
    template = jinja2.Environment().from_string(INTERNLM2_CHAT_TEMPLATE)
    for gen in (True, False):
        for msgs in (MESSAGES, MESSAGES[:1], []):
            expected = template.render(messages=msgs, add_generation_prompt=gen, bos_token="<s>")
            assert tok.render_chat(msgs, add_generation_prompt=gen) == expected


def test_transformers_apply_chat_template(tok: Tokenizer, saved_dir: Path) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(saved_dir))
    text = hf.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == EXPECTED
    ids = hf.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    assert list(ids) == tok.encode_chat(MESSAGES)


def test_other_templates_render_through_jinja(tok: Tokenizer) -> None:
    pytest.importorskip("jinja2")
    other = Tokenizer(tok.backend, chat_template="{% for m in messages %}[{{ m['role'] }}]"
                      "{{ m['content'] }}{% endfor %}{{ eos_token }}")
    assert other.render_chat(MESSAGES[:2]) == f"[system]{MESSAGES[0]['content']}" \
        f"[user]{MESSAGES[1]['content']}</s>"


@pytest.mark.parametrize("bad", [
    [{"role": "user"}],
    [{"role": "user", "content": None}],
    [{"content": "no role"}],
    ["just a string"],
])
def test_malformed_messages(tok: Tokenizer, bad: list) -> None:
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        tok.render_chat(bad)


def test_messages_must_be_a_list(tok: Tokenizer) -> None:
    with pytest.raises(TypeError):
        tok.render_chat({"role": "user", "content": "hi"})  # type: ignore[arg-type]
