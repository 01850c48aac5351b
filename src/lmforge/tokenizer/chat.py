"""The InternLM2 chat format.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1, "Chat format".

A conversation is rendered as

    <s><|im_start|>system\n...<|im_end|>\n<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n

and generation stops on `<|im_end|>`. `INTERNLM2_CHAT_TEMPLATE` is the Jinja template published
with InternLM2-chat (it goes into `tokenizer_config.json` so that `transformers` renders the same
string); `render_chat` produces that string in plain Python so lmforge needs no Jinja at runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lmforge.tokenizer.special import BOS, IM_END, IM_START

INTERNLM2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

Message = Mapping[str, str]


def _check_messages(messages: Sequence[Message]) -> None:
    if isinstance(messages, (str, Mapping)):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
    for i, message in enumerate(messages):
        for key in ("role", "content"):
            value = message.get(key) if isinstance(message, Mapping) else None
            if not isinstance(value, str):
                raise ValueError(
                    f"messages[{i}] needs a string {key!r} (got {value!r}); each message is "
                    "{'role': 'system'|'user'|'assistant'|'environment', 'content': str}"
                )


def render_chat(
    messages: Sequence[Message], add_generation_prompt: bool = True, bos_token: str = BOS
) -> str:
    """Render `messages` exactly as `INTERNLM2_CHAT_TEMPLATE` does."""
    _check_messages(messages)
    parts = [bos_token]
    for m in messages:
        parts.append(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n")
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


def render_template(
    template: str,
    messages: Sequence[Message],
    add_generation_prompt: bool = True,
    **special_tokens: str | None,
) -> str:
    """Render any other Jinja chat template (one loaded with a foreign tokenizer) via jinja2.

    The environment mirrors the one `transformers` uses (sandboxed, trim_blocks, lstrip_blocks)
    so that the string is the one `apply_chat_template` would give.
    """
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:
        raise ImportError(
            "this tokenizer's chat_template is not the InternLM2 one, so rendering it needs "
            "jinja2: pip install 'lmforge[hf]'"
        ) from e

    def raise_exception(message: str) -> None:
        raise ValueError(f"chat template error: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=list(messages), add_generation_prompt=add_generation_prompt, **special_tokens
    )
