"""Checkable chat tasks: demo data for SFT, reward models and RL that can report real accuracy.

Paper: InternLM2 report section 4 (SFT, COOL RLHF), arXiv 2403.17297; docs/papers.md §7.

InternLM2 aligns its models with chat data, reward models and online RL. The demo of that pipeline
trains 2M-parameter models with a 128-token context, so it needs chat tasks such a model can learn
and a program can grade. Each task here draws (prompt, reference answer) pairs from a seeded
`random.Random` and has a checker that labels any response "correct", "wrong" (the required form,
the wrong value) or "malformed" (ignores the required form). SFT then reports accuracy, reward
models get ranked answers (reference > `wrong` > `malformed`), and RL gets a verifiable reward.
Prompts stay well under 200 characters and answers are one short line.

Eight tasks in four domains: arithmetic (`add`, `sort`), text (`reverse`, `copy`, `count`), format
(`json`) and language (`zh` in Chinese, `first_word` in English). The word lists are written below,
so the tasks install with the package and read no corpus.

Three splits, disjoint by prompt: the SHA-1 of a prompt's text picks one of 10 buckets (`split_of`),
bucket 0 is "test" (held-out accuracy), buckets 1 and 2 are "rl" (the prompts online RL answers) and
the rest "train" (SFT, reward models, POLAR). The split of a prompt never depends on the seed, so RL
never trains on a prompt that SFT learned by heart: drawn from "train" with another seed, a task with
few distinct prompts (`copy`, `zh`) would have handed RL the SFT's own examples, whose answers the
policy recalls rather than works out.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lmforge.edit_distance import levenshtein

Verdict = Literal["correct", "wrong", "malformed"]
DOMAINS = ("arithmetic", "text", "format", "language")
SPLITS = ("train", "rl", "test")
HASH_BUCKETS = 10  # bucket 0 of the prompt's SHA-1 is the test split, about a tenth of all prompts
RL_BUCKETS = (1, 2)  # the prompts online RL answers, a fifth, never seen in SFT
MAX_TRIES = 10_000  # candidates drawn for one new prompt before a task counts as exhausted
END_OF_TURN = "<|im_end|>"


@dataclass(frozen=True)
class Example:
    """One chat exchange with its reference answer and the facts its checker needs."""

    task: str  # a key of TASKS
    prompt: str  # the user message
    answer: str  # the reference assistant message, in canonical form
    meta: dict = field(default_factory=dict, hash=False)  # JSON-serialisable facts for the checker

    def messages(self, system: str | None = None) -> list[dict]:
        """The exchange in OpenAI's shape: [system], user, assistant (the reference answer)."""
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.answer}]

    def to_json(self) -> dict:
        return {"task": self.task, "prompt": self.prompt, "answer": self.answer, "meta": copy.deepcopy(self.meta)}

    @classmethod
    def from_json(cls, d: dict) -> Example:
        missing = [key for key in ("task", "prompt", "answer") if key not in d]
        if missing:
            raise ValueError(f"example JSON lacks {', '.join(missing)}; it needs task, prompt, answer (and meta)")
        return cls(task=d["task"], prompt=d["prompt"], answer=d["answer"], meta=copy.deepcopy(d.get("meta", {})))


@dataclass(frozen=True)
class Task:
    """A generator of examples with its checker and two makers of bad answers (for reward data)."""

    name: str
    domain: str  # one of DOMAINS
    make: Callable[[random.Random], Example]
    check: Callable[[Example, str], Verdict]
    wrong: Callable[[Example, random.Random], str]  # well formed, labelled "wrong" by `check`
    malformed: Callable[[Example, random.Random], str]  # ignores the form, labelled "malformed"


def _task(name: str, domain: str, make: Callable[[random.Random], Example], check: Callable[[Example, str], Verdict],
          propose_wrong: Callable[[Example, random.Random], str],
          propose_malformed: Callable[[Example, random.Random], str]) -> Task:
    """A Task whose `wrong` and `malformed` redraw a proposal until the checker agrees with the label
    (a "wrong" proposal can happen to be right: the shuffle of a sorted list may be sorted)."""

    def insist(propose: Callable[[Example, random.Random], str], verdict: Verdict):
        def answer(example: Example, rng: random.Random) -> str:
            for _ in range(1000):
                response = propose(example, rng)
                if check(example, response) == verdict:
                    return response
            raise RuntimeError(f"task {name!r} found no {verdict} answer to {example.prompt!r} in 1000 tries")
        return answer

    return Task(name, domain, make, check, insist(propose_wrong, "wrong"), insist(propose_malformed, "malformed"))


# --- reading responses --------------------------------------------------------------------------

_BARE_INT = re.compile(r"-?[0-9]+")
_LOWER_WORD = re.compile(r"[a-z]+")
_ENGLISH_WORD = re.compile(r"[A-Za-z]+")
_HANZI = re.compile(r"[\u4e00-\u9fff]+")


def clean(response: str) -> str:
    """The response without surrounding whitespace and without a trailing end-of-turn token."""
    text = response.strip()
    if text.endswith(END_OF_TURN):
        text = text[: -len(END_OF_TURN)].strip()
    return text


def _int_text(text: str) -> str | None:
    """A bare integer in canonical form ("007" -> "7", "-0" -> "0"), None if `text` is not one.
    Kept as text: Python refuses int() of numbers past 4,300 digits, and a response may be one."""
    if not _BARE_INT.fullmatch(text):
        return None
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    digits = digits.lstrip("0") or "0"
    return digits if digits == "0" else sign + digits


def _verdict(right: bool) -> Verdict:
    return "correct" if right else "wrong"


def _check_int(example: Example, response: str) -> Verdict:
    value = _int_text(clean(response))
    return "malformed" if value is None else _verdict(value == example.answer)


def _wrong_int(example: Example, rng: random.Random) -> str:
    return str(max(0, int(example.answer) + rng.choice((-1, 1)) * rng.choice((1, 2, 3, 10))))


def _malformed_int(example: Example, rng: random.Random) -> str:
    n = example.answer
    return rng.choice((f"The answer is {n}.", f"It is {n}", f"{n}!", f"= {n}", f"{n} in total", "I don't know.", ""))


# --- word lists ---------------------------------------------------------------------------------

NOUNS = ("apple", "bread", "chair", "water", "house", "table", "light", "music", "river", "stone", "cloud", "horse",
         "dog", "cat", "sun", "moon", "star", "tree", "book", "fish", "bird", "rain", "snow", "milk", "door", "road",
         "ship", "lamp", "king", "queen", "sea", "sand", "leaf", "wind", "fire", "song", "ball", "cake", "hand",
         "city", "park", "train", "plant", "sugar", "paper", "glass", "dream", "ocean", "garden", "window", "letter")
ADJECTIVES = ("red", "blue", "green", "happy", "small", "big", "cold", "warm", "fast", "slow", "old", "new", "sweet",
              "quiet", "bright", "dark", "soft", "kind")
VERBS = ("sees", "likes", "eats", "finds", "wants", "holds", "draws", "paints", "opens", "makes", "buys", "moves")
DETERMINERS = ("the", "a", "my", "one", "this", "that", "our", "your", "every")
NAMES = ("tom", "anna", "sam", "lily", "max", "emma", "jack", "mia")
ADVERBS = ("today", "again", "slowly", "often", "now", "quickly")
WORDS = NOUNS + ADJECTIVES  # the common words that reverse, copy, count and json draw from


def _short_word(rng: random.Random) -> str:
    """A common word or, as often, 3 to 6 random lowercase letters."""
    if rng.random() < 0.5:
        return rng.choice(WORDS)
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 6)))


def _number(rng: random.Random) -> int:
    """An integer of 1, 2 or 3 digits, each length as likely."""
    digits = rng.randint(1, 3)
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


# --- add (arithmetic) ---------------------------------------------------------------------------

ADD_TEMPLATES = ("What is {a} + {b}?", "Add {a} and {b}.", "Compute the sum of {a} and {b}.")


def _make_add(rng: random.Random) -> Example:
    a, b = _number(rng), _number(rng)
    return Example("add", rng.choice(ADD_TEMPLATES).format(a=a, b=b), str(a + b), {"a": a, "b": b})


# --- sort (arithmetic) --------------------------------------------------------------------------

SORT_TEMPLATES = ("Sort these numbers from smallest to largest: {xs}", "Put in ascending order: {xs}",
                  "Sort ascending, separated by spaces: {xs}")


def _make_sort(rng: random.Random) -> Example:
    numbers = [rng.randint(0, 99) for _ in range(rng.randint(3, 5))]
    prompt = rng.choice(SORT_TEMPLATES).format(xs=" ".join(map(str, numbers)))
    return Example("sort", prompt, " ".join(map(str, sorted(numbers))), {"numbers": numbers})


def _check_sort(example: Example, response: str) -> Verdict:
    """Well formed: integers separated by whitespace (commas are not the asked-for form)."""
    values = [_int_text(token) for token in clean(response).split()]
    if not values or None in values:
        return "malformed"
    return _verdict(values == example.answer.split())


def _wrong_sort(example: Example, rng: random.Random) -> str:
    numbers = sorted(example.meta["numbers"])
    mistake = rng.choice(("shuffle", "drop", "change"))
    if mistake == "shuffle":
        rng.shuffle(numbers)
    elif mistake == "drop":
        numbers.pop(rng.randrange(len(numbers)))
    else:
        numbers[rng.randrange(len(numbers))] = rng.randint(0, 99)
        numbers.sort()
    return " ".join(map(str, numbers))


def _malformed_sort(example: Example, rng: random.Random) -> str:
    numbers = example.answer.split()
    return rng.choice((", ".join(numbers), f"[{', '.join(numbers)}]", f"Sorted: {example.answer}",
                       "smallest to largest", f"{example.answer}."))


# --- reverse (text) -----------------------------------------------------------------------------

REVERSE_TEMPLATES = ("Reverse the word: {w}", "Write {w} backwards.", "Spell {w} in reverse.")


def _make_reverse(rng: random.Random) -> Example:
    word = _short_word(rng)
    return Example("reverse", rng.choice(REVERSE_TEMPLATES).format(w=word), word[::-1], {"word": word})


def _check_word(example: Example, response: str) -> Verdict:
    """Well formed: one lowercase word."""
    text = clean(response)
    return _verdict(text == example.answer) if _LOWER_WORD.fullmatch(text) else "malformed"


def _wrong_reverse(example: Example, rng: random.Random) -> str:
    letters = list(example.answer)
    mistake = rng.choice(("unreversed", "swap", "change"))
    if mistake == "unreversed":
        return example.meta["word"]
    i, j = rng.sample(range(len(letters)), 2)
    if mistake == "swap":
        letters[i], letters[j] = letters[j], letters[i]
    else:
        letters[i] = rng.choice(string.ascii_lowercase)
    return "".join(letters)


def _malformed_word(example: Example, rng: random.Random) -> str:
    answer = example.answer
    return rng.choice((f"The answer is {answer}.", " ".join(answer), answer.upper(), f"{answer}!", f'"{answer}"'))


# --- copy (text) --------------------------------------------------------------------------------

COPY_TEMPLATES = ("Repeat the word {w} {n} times.", "Write {w} {n} times, separated by spaces.", "Say {w} {times}.")
TIMES = {2: "twice", 3: "three times", 4: "four times"}


def _make_copy(rng: random.Random) -> Example:
    word, n = _short_word(rng), rng.randint(2, 4)
    prompt = rng.choice(COPY_TEMPLATES).format(w=word, n=n, times=TIMES[n])
    return Example("copy", prompt, " ".join([word] * n), {"word": word, "n": n})


def _check_copy(example: Example, response: str) -> Verdict:
    """Well formed: lowercase words separated by whitespace."""
    words = clean(response).split()
    if not words or not all(_LOWER_WORD.fullmatch(word) for word in words):
        return "malformed"
    return _verdict(words == example.answer.split())


def _wrong_copy(example: Example, rng: random.Random) -> str:
    word, n = example.meta["word"], example.meta["n"]
    mistake = rng.choice(("fewer", "more", "other word", "joined"))
    if mistake == "fewer":
        return " ".join([word] * (n - 1))
    if mistake == "more":
        return " ".join([word] * (n + 1))
    if mistake == "other word":
        return " ".join([_short_word(rng)] * n)
    return word * n


def _malformed_copy(example: Example, rng: random.Random) -> str:
    word, n = example.meta["word"], example.meta["n"]
    return rng.choice((", ".join([word] * n), f"{word} x{n}", example.answer.upper(), f"Sure: {example.answer}",
                       str(n)))


# --- count (text) -------------------------------------------------------------------------------

COUNT_TEMPLATES = ("How many times does the letter {c} appear in {w}?", "Count the letter {c} in {w}.",
                   "How many {c}'s are in {w}?")


def _make_count(rng: random.Random) -> Example:
    """The answer is 0, 1 or 2, each as likely, so that no constant answer scores above a third (when
    the letter was drawn from a common word, "1" alone scored 63%, and RL learned to say only that).
    The word is 3 to 6 random letters holding the letter that many times: one source for every
    answer, so the kind of word gives nothing away, and enough distinct prompts for each answer."""
    want, letter = rng.randint(0, 2), rng.choice(string.ascii_lowercase)
    others = [c for c in string.ascii_lowercase if c != letter]
    chars = [rng.choice(others) for _ in range(rng.randint(max(3, want), 6))]
    for i in rng.sample(range(len(chars)), want):
        chars[i] = letter
    word = "".join(chars)
    prompt = rng.choice(COUNT_TEMPLATES).format(c=letter, w=word)
    return Example("count", prompt, str(want), {"word": word, "letter": letter})


# --- json (format) ------------------------------------------------------------------------------

JSON_LEADS = ('Answer in JSON with key "{k}": ', 'Reply with a JSON object {{"{k}": ...}}: ')


def _make_json(rng: random.Random) -> Example:
    key, word = rng.choice(("len", "sum", "first")), _short_word(rng)
    if key == "len":
        question, value = f'how many letters are in "{word}"?', len(word)
    elif key == "sum":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        question, value = f"what is {a} + {b}?", a + b
    else:
        question, value = f'what is the first letter of "{word}"?', word[0]
    prompt = rng.choice(JSON_LEADS).format(k=key) + question
    return Example("json", prompt, json.dumps({key: value}), {"key": key, "value": value})


def _check_json(example: Example, response: str) -> Verdict:
    """Well formed: a JSON object whose only key is the asked-for one. Correct: the value equals the
    reference with the same JSON type (5, not "5" or 5.0)."""
    try:
        parsed = json.loads(clean(response))
    except (ValueError, RecursionError):  # RecursionError: deeply nested brackets
        return "malformed"
    key = example.meta["key"]
    if not isinstance(parsed, dict) or list(parsed) != [key]:
        return "malformed"
    got, want = parsed[key], example.meta["value"]
    return _verdict(type(got) is type(want) and got == want)


def _wrong_json(example: Example, rng: random.Random) -> str:
    key, value = example.meta["key"], example.meta["value"]
    if isinstance(value, int):
        other = max(0, value + rng.choice((-1, 1)) * rng.choice((1, 2, 3)))
    else:
        other = rng.choice(string.ascii_lowercase)
    return json.dumps({key: other})


def _malformed_json(example: Example, rng: random.Random) -> str:
    key, value = example.meta["key"], example.meta["value"]
    return rng.choice((str(value), f"{{{key}: {value}}}", json.dumps({key: value, "note": "done"}),
                       json.dumps([value]), f"The answer is {example.answer}", f"{{'{key}': {value!r}}}"))


# --- zh (language, Chinese) ---------------------------------------------------------------------

ZH_WORDS = ("中国", "学习", "朋友", "老师", "学生", "今天", "明天", "天气", "吃饭", "喜欢", "工作", "时间", "问题",
            "电脑", "手机", "音乐", "电影", "苹果", "米饭", "水果", "北京", "上海", "家人", "妈妈", "爸爸", "孩子",
            "学校", "医院", "公园", "城市", "春天", "夏天", "秋天", "冬天", "太阳", "月亮", "星星", "大海", "花园",
            "快乐", "幸福", "美丽", "健康", "努力", "世界", "文化", "历史", "语言", "汉字", "报纸", "火车", "飞机",
            "汽车", "早上", "晚上", "咖啡", "牛奶", "面包", "鸡蛋", "你好", "谢谢", "自行车", "图书馆", "大熊猫")
ZH_PHRASES = ("我爱中国", "今天天气很好", "我们一起学习", "他是我的朋友", "妈妈在做饭", "我喜欢听音乐",
              "明天我们去公园", "学生们在上课", "北京是首都", "我想喝咖啡", "春天来了", "孩子们很快乐",
              "老师很认真", "我每天早上跑步", "这本书很有意思", "火车开得很快", "欢迎你来上海", "祝你生日快乐")
ZH_TIMES = {2: "两", 3: "三"}
ZH_REPEAT = ("把这个词重复{t}遍：{w}", "请把“{w}”写{t}遍。")
ZH_COUNT = ("这句话有几个字：{p}", "数一数有几个字：{p}")
ZH_REVERSE = ("把这个词倒过来写：{w}", "倒着写：{w}")


def _zh_text(rng: random.Random) -> str:
    """A common word or, as often, two of them joined."""
    return rng.choice(ZH_WORDS) + (rng.choice(ZH_WORDS) if rng.random() < 0.5 else "")


def _make_zh(rng: random.Random) -> Example:
    kind = rng.choice(("repeat", "count", "reverse"))
    if kind == "repeat":
        text, n = _zh_text(rng), rng.choice((2, 3))
        return Example("zh", rng.choice(ZH_REPEAT).format(w=text, t=ZH_TIMES[n]), text * n,
                       {"kind": kind, "text": text, "n": n})
    if kind == "count":
        text = rng.choice(ZH_PHRASES) if rng.random() < 0.3 else "".join(rng.sample(ZH_WORDS, rng.randint(2, 3)))
        return Example("zh", rng.choice(ZH_COUNT).format(p=text), str(len(text)), {"kind": kind, "text": text})
    text = _zh_text(rng)
    return Example("zh", rng.choice(ZH_REVERSE).format(w=text), text[::-1], {"kind": kind, "text": text})


def _check_zh(example: Example, response: str) -> Verdict:
    """Counts: a bare integer. Otherwise: Chinese characters only (spaces between them ignored)."""
    if example.meta["kind"] == "count":
        return _check_int(example, response)
    text = "".join(clean(response).split())
    return _verdict(text == example.answer) if _HANZI.fullmatch(text) else "malformed"


def _wrong_zh(example: Example, rng: random.Random) -> str:
    kind, text = example.meta["kind"], example.meta["text"]
    if kind == "count":
        return _wrong_int(example, rng)
    if kind == "repeat":
        n = example.meta["n"]
        return rng.choice((text * (n - 1), text * (n + 1), _zh_text(rng) * n))
    return rng.choice((text, _zh_text(rng)[::-1], example.answer + example.answer[-1]))


def _malformed_zh(example: Example, rng: random.Random) -> str:
    answer = example.answer
    if example.meta["kind"] == "count":
        return rng.choice((f"有{answer}个字", f"{answer}个", "不知道", f"答案是{answer}。"))
    return rng.choice((f"答案：{answer}", f"OK {answer}", f"{answer}!", rng.choice(WORDS), f"“{answer}”"))


# --- first_word (language, English) -------------------------------------------------------------

FIRST_WORD_TEMPLATES = ("What is the first word of: {s}", "Say the first word of this sentence: {s}",
                        "Which word comes first in: {s}")


def _noun_phrase(rng: random.Random) -> list[str]:
    adjective = [rng.choice(ADJECTIVES)] if rng.random() < 0.5 else []
    return [rng.choice(DETERMINERS), *adjective, rng.choice(NOUNS)]


def _sentence(rng: random.Random) -> str:
    """Subject, verb, object and sometimes an adverb: 3 to 8 lowercase words, no punctuation."""
    subject = [rng.choice(NAMES)] if rng.random() < 0.3 else _noun_phrase(rng)
    adverb = [rng.choice(ADVERBS)] if rng.random() < 0.3 else []
    return " ".join([*subject, rng.choice(VERBS), *_noun_phrase(rng), *adverb])


def _make_first_word(rng: random.Random) -> Example:
    sentence = _sentence(rng)
    prompt = rng.choice(FIRST_WORD_TEMPLATES).format(s=sentence)
    return Example("first_word", prompt, sentence.split()[0], {"sentence": sentence})


def _check_first_word(example: Example, response: str) -> Verdict:
    """Well formed: one word of letters; compared ignoring case ("The" is the first word too)."""
    text = clean(response)
    return _verdict(text.lower() == example.answer) if _ENGLISH_WORD.fullmatch(text) else "malformed"


def _wrong_first_word(example: Example, rng: random.Random) -> str:
    return rng.choice((rng.choice(example.meta["sentence"].split()[1:]), rng.choice(WORDS)))


def _malformed_first_word(example: Example, rng: random.Random) -> str:
    answer = example.answer
    return rng.choice((f"The first word is {answer}.", f'"{answer}"', example.meta["sentence"], f"{answer}.", "1"))


# --- the registry and what callers use ----------------------------------------------------------

TASKS: dict[str, Task] = {task.name: task for task in (
    _task("add", "arithmetic", _make_add, _check_int, _wrong_int, _malformed_int),
    _task("sort", "arithmetic", _make_sort, _check_sort, _wrong_sort, _malformed_sort),
    _task("reverse", "text", _make_reverse, _check_word, _wrong_reverse, _malformed_word),
    _task("copy", "text", _make_copy, _check_copy, _wrong_copy, _malformed_copy),
    _task("count", "text", _make_count, _check_int, _wrong_int, _malformed_int),
    _task("json", "format", _make_json, _check_json, _wrong_json, _malformed_json),
    _task("zh", "language", _make_zh, _check_zh, _wrong_zh, _malformed_zh),
    _task("first_word", "language", _make_first_word, _check_first_word, _wrong_first_word, _malformed_first_word),
)}


def _task_named(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def split_of(prompt: str) -> str:
    """The split a prompt belongs to: "test" for about one in ten, "rl" for two in ten, "train" for the
    rest (SHA-1, not Python's salted hash(), so the answer is the same in every process)."""
    bucket = int(hashlib.sha1(prompt.encode("utf-8")).hexdigest(), 16) % HASH_BUCKETS
    return "test" if bucket == 0 else "rl" if bucket in RL_BUCKETS else "train"


def _draw(task: Task, rng: random.Random, split: str, seen: set[str]) -> Example:
    """The next example of `task` whose prompt is in `split` and not yet in `seen`."""
    for _ in range(MAX_TRIES):
        example = task.make(rng)
        if example.prompt not in seen and split_of(example.prompt) == split:
            seen.add(example.prompt)
            return example
    raise RuntimeError(f"task {task.name!r} produced no new {split} prompt in {MAX_TRIES} tries "
                       f"({len(seen)} prompts collected): it has run out of distinct prompts; ask for fewer examples")


def make_examples(n: int, seed: int, split: str = "train", tasks: Sequence[str] | None = None) -> list[Example]:
    """`n` examples of `split`, the tasks taking turns in the order of `tasks` (default: all, in TASKS
    order; a name listed twice comes up twice as often). The same arguments give the same list, and
    each task draws from its own random stream, so one task's examples do not depend on the others."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    names = list(TASKS) if tasks is None else [tasks] if isinstance(tasks, str) else list(tasks)
    if not names:
        raise ValueError(f"tasks is empty; name some of: {', '.join(TASKS)}")
    chosen = [_task_named(name) for name in names]
    rngs = {task.name: random.Random(f"{seed}:{split}:{task.name}") for task in chosen}
    seen: set[str] = set()
    return [_draw(task, rngs[task.name], split, seen) for task in (chosen[i % len(chosen)] for i in range(n))]


def similarity(example: Example, response: str) -> float:
    """How close a response is to the reference, in [0, 1]: one minus their edit distance over the
    longer's length, in the reference's units (words where it has several, as `sort` and `copy`;
    characters otherwise). Partial credit for RL (`rl.partial_credit`); the checkers decide accuracy."""
    reference, text = example.answer, clean(response)
    a, b = (reference.split(), text.split()) if len(reference.split()) > 1 else (reference, text)
    longest = max(len(a), len(b))
    return 1.0 - levenshtein(a, b) / longest if longest else 1.0


def check(example: Example, response: str) -> Verdict:
    """The verdict of `example`'s task on a response (any string; a non-string is "malformed")."""
    task = _task_named(example.task)
    return task.check(example, response) if isinstance(response, str) else "malformed"


def accuracy(examples: Iterable[Example], responses: Iterable[str]) -> dict[str, float]:
    """The share of "correct" responses per task (in order of first appearance) and over "all"
    (0.0 when there are no examples)."""
    examples, responses = list(examples), list(responses)
    if len(examples) != len(responses):
        raise ValueError(f"{len(examples)} examples but {len(responses)} responses; give one response per example")
    return share_by_task(examples, [check(ex, response) == "correct" for ex, response in zip(examples, responses)])


def share_by_task(examples: Sequence[Example], hits: Sequence[bool]) -> dict[str, float]:
    """The share of true `hits` (one per example) per task, in order of first appearance, and over
    "all" (0.0 when there are no examples)."""
    by_task: dict[str, list[bool]] = {}
    for example, hit in zip(examples, hits, strict=True):
        by_task.setdefault(example.task, []).append(bool(hit))
    scores = {name: sum(task_hits) / len(task_hits) for name, task_hits in by_task.items()}
    scores["all"] = sum(map(bool, hits)) / len(hits) if len(hits) else 0.0
    return scores
