"""The MIMG agents as prompts and parsers: what each one asks the model, and how its answer is read.

Paper: LongMIT / MIMG, arXiv 2409.01893, the Multi-agent Interactive Multi-hop Generation
framework; docs/papers.md §8. The prompts are lmforge's own wording of the roles the paper gives:

* single-hop question agent (`questions_prompt` / `parse_questions`): up to 3 self-contained
  factual questions per ~2k-token chunk, as a JSON list;
* quality verification agent: `standalone_prompt` / `parse_yes_no` drops a question that needs
  outside context (it points at "the passage", "this figure", an unexplained "he"); `answer_prompt`
  answers it from the chunk (an answer that says the chunk does not tell is dropped:
  `parse_answer`); `simplify_prompt` reduces that answer to its core (an entity, a number, yes/no);
* multi-hop merger agent (`merge_prompt` / `parse_qa`): two QA pairs into one question that needs
  both, with an answer that reasons through both; merged again with the next pair for more hops.

Three agents and the judge also send a `response_format` (OpenAI structured outputs; `lmforge
serve`, vLLM, SGLang and LMDeploy enforce it token by token): the question agent a JSON list of at
most 3 strings, the standalone check "YES" or "NO", the merger a {"question", "answer"} object, the
judge an integer 1-10. A model too small to
follow the instruction's format still answers in it; a run against an endpoint without structured
outputs turns them off (`Client.structured`) and relies on the parsers alone.

A parser returns `(value, "")`, or `(None, reason)` for an answer that cannot be used: `empty
answer`, `unparseable`, `no questions`, `needs outside context`, ... The pipeline counts the
reasons and skips the item; nothing here raises on what a model says. Parsing is tolerant: JSON
inside prose or a code fence, a numbered list, "Question: ... Answer: ..." lines are all read.
"""

from __future__ import annotations

import json
import re

Messages = list[dict[str, str]]
Parsed = tuple[object, str]

SYSTEM = "You write precise, self-contained questions and answers about documents."
MAX_QUESTION_CHARS = 500
# an answer that declines: "not mentioned", "the passage does not say", "cannot be answered", ...
DECLINE_RE = re.compile(r"\b(not (?:mentioned|stated|provided|given|specified)|does not (?:say|mention|state|"
                        r"provide|specify)|cannot be (?:answered|determined)|no information)\b", re.I)
LIST_MARK_RE = re.compile(r"^\s*(?:[-*•]|\d+[.)]|q\d*[:.)]|question\s*\d*[:.)])\s*", re.I)
QA_LINES_RE = re.compile(r"(?:^|\n)\s*\**\s*(?:question|q|问题)\s*\**\s*[:：]\s*(?P<q>.+?)\s*(?:\n\s*)+\**\s*"
                         r"(?:answer|a|回答|答案)\s*\**\s*[:：]\s*(?P<a>.+)", re.I | re.S)


QUESTION_CHARS = 200   # a generated question at most (the schema's maxLength; the parser allows 500)
ANSWER_CHARS = 400     # a merged answer at most


def _format(name: str, schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def questions_format(max_questions: int = 3) -> dict:
    return _format("questions", {"type": "array", "minItems": 1, "maxItems": max_questions,
                                 "items": {"type": "string", "minLength": 1, "maxLength": QUESTION_CHARS}})


YES_NO_FORMAT = _format("verdict", {"enum": ["YES", "NO"]})
SCORE_FORMAT = _format("score", {"enum": list(range(1, 11))})  # the judge's 1-10 (scoring.judge_prompt)
QA_FORMAT = _format("qa", {"type": "object", "additionalProperties": False, "required": ["question", "answer"],
                           "properties": {"question": {"type": "string", "minLength": 1, "maxLength": QUESTION_CHARS},
                                          "answer": {"type": "string", "minLength": 1, "maxLength": ANSWER_CHARS}}})


def _user(text: str) -> Messages:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def questions_prompt(chunk: str, max_questions: int = 3) -> Messages:
    return _user(
        f"Document:\n{chunk}\n\n"
        f"Write at most {max_questions} questions that this document answers. Each question must:\n"
        "- be understandable without the document (name people, places and things; no 'it', 'the text', "
        "'the author', no figures or tables);\n"
        "- ask about a fact the document states: a number, a date, a person, a place, an event;\n"
        "- differ from the others.\n"
        'Reply with a JSON list of strings only, e.g. ["...?", "...?"]; reply [] if the document has no such fact.')


def standalone_prompt(question: str) -> Messages:
    return _user(
        f"Question: {question}\n\n"
        "Can a reader understand exactly what this question asks without seeing any document or earlier "
        "conversation? Answer NO if it refers to 'the passage', 'the text', 'this study', a figure or table, or "
        "uses a pronoun or 'the ...' whose referent is not named in the question. Reply with YES or NO only.")


def answer_prompt(chunk: str, question: str) -> Messages:
    return _user(
        f"Document:\n{chunk}\n\nQuestion: {question}\n\n"
        "Answer the question from the document only, in one or two sentences that quote its facts. "
        "If the document does not contain the answer, reply exactly: NOT IN DOCUMENT.")


def simplify_prompt(question: str, answer: str) -> Messages:
    return _user(
        f"Question: {question}\nAnswer: {answer}\n\n"
        "Shorten the answer to its core: a name, a date, a number, a place, yes or no, or one short phrase. "
        "Reply with the short answer only.")


def merge_prompt(first: tuple[str, str], second: tuple[str, str]) -> Messages:
    return _user(
        f"Question 1: {first[0]}\nAnswer 1: {first[1]}\n\nQuestion 2: {second[0]}\nAnswer 2: {second[1]}\n\n"
        "Combine the two into ONE realistic question that can only be answered by using both answers (compare "
        "two dates or numbers, link a person to an event, ...), keeping their facts unchanged. The answer must "
        "give the reasoning through both facts and end with the conclusion.\n"
        'Reply with one JSON object on one line: {"question": "...", "answer": "..."}')


def _strip_fence(text: str) -> str:
    text = text.strip()
    fence = re.match(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```", text, re.S)
    return fence.group(1).strip() if fence else text


def _first_json(text: str, opener: str) -> object | None:
    """The first JSON value starting with `opener` ('[' or '{') anywhere in `text`, else None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(re.escape(opener), text):
        try:
            return decoder.raw_decode(text[match.start():])[0]
        except json.JSONDecodeError:
            continue
    return None


def _clean_question(q: object) -> str:
    if isinstance(q, dict):  # [{"question": "..."}], a common variant
        q = next((v for k, v in q.items() if str(k).lower() in ("question", "q", "问题")), "")
    return LIST_MARK_RE.sub("", q).strip().strip('"').strip() if isinstance(q, str) else ""


def parse_questions(text: str | None, max_questions: int = 3) -> Parsed:
    """(list of distinct questions, "") from a JSON list or a list of lines with '?'."""
    if not text or not text.strip():
        return None, "empty answer"
    text = _strip_fence(text)
    value = _first_json(text, "[")
    if isinstance(value, list):
        questions = [_clean_question(q) for q in value]
        if not value:
            return None, "no questions"
    else:
        questions = [_clean_question(line) for line in text.splitlines() if "?" in line or "？" in line]
    unique: list[str] = []
    for q in questions:
        if q and len(q) <= MAX_QUESTION_CHARS and q.lower() not in {u.lower() for u in unique}:
            unique.append(q)
    if not unique:
        return None, "unparseable"
    return unique[:max_questions], ""


def parse_yes_no(text: str | None) -> Parsed:
    """(True for yes, False for no, "") from the first yes/no word; (None, reason) when neither is there."""
    if not text or not text.strip():
        return None, "empty answer"
    match = re.search(r"\b(yes|no|true|false)\b|(是|否)", text, re.I)
    if not match:
        return None, "unparseable"
    return match.group().lower() in ("yes", "true", "是"), ""


def parse_answer(text: str | None) -> Parsed:
    """(answer, "") unless empty or a refusal ('NOT IN DOCUMENT', 'not mentioned', ...)."""
    if not text or not text.strip():
        return None, "empty answer"
    answer = _strip_fence(text)
    answer = re.sub(r"^\s*(?:short |simplified )?answer\s*[:：]\s*", "", answer, flags=re.I).strip()
    if "NOT IN DOCUMENT" in answer.upper() or DECLINE_RE.search(answer):
        return None, "not answered by the chunk"
    return answer, ""


def parse_qa(text: str | None) -> Parsed:
    """((question, answer), "") from a JSON object or "Question: ... Answer: ..." lines."""
    if not text or not text.strip():
        return None, "empty answer"
    text = _strip_fence(text)
    value = _first_json(text, "{")
    if isinstance(value, dict):
        fields = {str(k).strip().lower(): v for k, v in value.items()}
        q = fields.get("question", fields.get("问题"))
        a = fields.get("answer", fields.get("回答", fields.get("答案")))
    else:
        match = QA_LINES_RE.search(text)
        q, a = (match.group("q"), match.group("a")) if match else (None, None)
    if not isinstance(q, str) or not isinstance(a, str) or not q.strip() or not a.strip():
        return None, "unparseable"
    return (q.strip(), a.strip()), ""
