"""The JSON grammar of structured outputs, checked against Python's `json` and the `jsonschema`
package: what it accepts parses and validates; what the schema allows, written in either spacing, it
accepts; its token masks equal a token-by-token check; a schema it cannot enforce is refused by name."""

import json
import random

import pytest
import torch

from lmforge.generate.json_grammar import JsonGrammar
from lmforge.generate.json_schema import SchemaError, compile_schema
from lmforge.generate.token_mask import TokenGrammar, Vocabulary

jsonschema = pytest.importorskip("jsonschema")

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"], "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 12},
    "age": {"type": "integer"},
    "height": {"type": "number"},
    "tags": {"type": "array", "items": {"enum": ["a", "b", 3, None]}, "maxItems": 3},
    "alive": {"type": "boolean"},
    "pet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pet"}]}},
    "$defs": {"pet": {"type": "object", "properties": {"kind": {"const": "cat"}, "owner": {"$ref": "#/$defs/pet"}}}}}
SCHEMAS = {
    "person": PERSON,
    "questions": {"type": "array", "items": {"type": "string", "maxLength": 30}, "minItems": 1, "maxItems": 3},
    "choice": {"enum": ["YES", "NO"]},
    "free object": {"type": "object"},
    "any": {},
    "nullable": {"type": ["string", "null"]},
}
ALPHABET = 'ab "\\/\n\té€😀\x01'


def _value(schema: dict, rng: random.Random, root: dict, depth: int = 0):
    """A random value the schema allows (for the subset the grammar supports)."""
    if "$ref" in schema:
        return _value(root["$defs"][schema["$ref"].split("/")[-1]], rng, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "anyOf" in schema:
        return _value(rng.choice(schema["anyOf"]), rng, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = rng.choice(kind)
    if kind is None:
        kind = rng.choice(["object", "array", "string", "number", "boolean", "null"] if depth < 3 else ["string"])
    if kind == "string":
        lo, hi = schema.get("minLength", 0), schema.get("maxLength", 8)
        return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(lo, hi)))
    if kind == "integer":
        return rng.randint(-10**6, 10**6)
    if kind == "number":
        return rng.choice([0, -1, 2.5, 1e-7, -3.25e10, rng.random()])
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems", 3)
        return [_value(schema.get("items", {}), rng, root, depth + 1) for _ in range(rng.randint(lo, hi))]
    props = schema.get("properties")
    if props is None:
        return {f"k{i}": _value({}, rng, root, depth + 1) for i in range(rng.randint(0, 2 if depth < 3 else 0))}
    required = set(schema.get("required", []))
    return {k: _value(s, rng, root, depth + 1) for k, s in props.items()
            if k in required or (depth < 4 and rng.random() < 0.5)}


def _grammar(schema) -> JsonGrammar:
    return JsonGrammar(*compile_schema(schema))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_what_the_schema_allows_is_accepted_in_both_spacings(name):
    schema, g, rng = SCHEMAS[name], _grammar(SCHEMAS[name]), random.Random(0)
    for _ in range(150):
        value = _value(schema, rng, schema)
        jsonschema.validate(value, schema)  # the generator itself is right
        for separators in ((",", ":"), (", ", ": ")):
            for ascii_only in (True, False):
                text = json.dumps(value, separators=separators, ensure_ascii=ascii_only)
                assert g.matches(text.encode()), text


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_what_the_grammar_accepts_parses_and_validates(name):
    """Mutations of valid documents (a byte dropped, doubled, replaced, a cut): each one the grammar
    accepts must be JSON that the schema allows, and some must be refused."""
    schema, g, rng = SCHEMAS[name], _grammar(SCHEMAS[name]), random.Random(1)
    refused = 0
    for _ in range(150):
        data = json.dumps(_value(schema, rng, schema), ensure_ascii=False).encode()
        for _ in range(4):
            i = rng.randrange(len(data) + 1)
            mutant = rng.choice([data[:i] + data[i + 1:], data[:i] + data[i:i + 1] * 2 + data[i + 1:],
                                 data[:i] + bytes([rng.choice(b'{}[],:" 0-.e\\x\x80\xff')]) + data[i + 1:], data[:i]])
            if g.matches(mutant):
                jsonschema.validate(json.loads(mutant.decode("utf-8")), schema)
            else:
                refused += 1
    assert refused > 100


@pytest.mark.parametrize("text,ok", [
    (b'"\xc3\xa9"', True), (b'"\xe2\x82\xac"', True), (b'"\xf0\x9f\x98\x80"', True),
    (b'"\x80"', False), (b'"\xc0\xaf"', False), (b'"\xe0\x80\xaf"', False), (b'"\xed\xa0\x80"', False),
    (b'"\xf4\x90\x80\x80"', False), (b'"\xc3"', False), (b'"a\x1fb"', False), (b'"\\u00e9\\n"', True),
    (b'"\\x"', False), (b'"\\u12G4"', False),
])
def test_strings_are_json_strings_in_utf8(text, ok):
    assert _grammar({"type": "string"}).matches(text) is ok


def test_bounds_end_what_a_model_could_run_on_forever():
    g = _grammar({"type": "array", "items": {"type": "string", "maxLength": 2}, "maxItems": 2})
    assert g.matches(b'["ab", "\\n\xc3\xa9"]')
    assert not g.matches(b'["abc"]') and not g.matches(b'["a", "b", "c"]')
    assert g.finished(g.advance(g.initial(), b'["a","b"]'))  # nothing may follow: the reply is over
    number = _grammar({"type": "integer"})
    one = number.advance(number.initial(), b"1")
    assert number.accepting(one) and not number.finished(one)  # 1, or 12, ...
    assert number.matches(b"9" * 24) and not number.matches(b"9" * 25)
    assert not _grammar({}).matches(b'{"a":  1}') and not _grammar({}).matches(b' {}')  # one space at most


@pytest.mark.parametrize("schema", [{"type": "number"}, {"type": "integer"}, SCHEMAS["questions"], PERSON, {}])
def test_no_state_is_a_dead_end(schema):
    """Byte-level random walks that favour what makes values long (digits, exponents, letters): every
    state reached either takes another byte or is a whole value."""
    g, rng = _grammar(schema), random.Random(3)
    for _ in range(60):
        state = g.initial()
        for _ in range(120):
            allowed = [b for b in range(256) if g.step(state, b)]
            if not allowed:
                assert g.accepting(state)
                break
            long = [b for b in allowed if b in b"0123456789eE-+.xyz"]
            state = g.step(state, rng.choice(long if long and rng.random() < 0.9 else allowed))


@pytest.mark.parametrize("schema,path", [
    ({"type": "string", "pattern": "^a"}, "pattern"),
    ({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}, "properties.age.minimum"),
    ({"type": "array", "items": [{"type": "string"}]}, "items"),
    ({"$ref": "#/$defs/missing"}, "$ref"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "required"),
    ({"type": "string", "maxLength": -1}, "maxLength"),
    ({"type": "thing"}, "type"),
    ({"type": "object", "properties": {"x": {"format": "date-time", "type": "string"}}}, "properties.x.format"),
])
def test_a_schema_that_cannot_be_enforced_is_refused_by_name(schema, path):
    with pytest.raises(SchemaError) as e:
        compile_schema(schema)
    assert e.value.path == path and path in str(e.value)


@pytest.fixture(scope="module")
def vocab():
    from lmforge.corpora import english_text
    from lmforge.tokenizer import train_bpe

    tok = train_bpe([english_text(60_000) + ' {"a": [1, 2.5], "b": "c\\n"} 中文字符 é€😀' * 20], vocab_size=700)
    return Vocabulary.of(tok)


@pytest.mark.parametrize("name", ["person", "questions", "free object"])
def test_token_masks_equal_a_token_by_token_check(vocab, name):
    """Along random walks through the grammar, the trie-and-table mask is exactly the set of tokens
    whose bytes the grammar accepts one by one (special tokens never)."""
    tg = TokenGrammar(SCHEMAS[name], vocab)
    g, rng = tg.grammar, random.Random(2)
    for _ in range(3):
        state = g.initial()
        for _ in range(40):
            mask = tg.allowed(state)
            brute = torch.tensor([bool(t) and bool(g.advance(state, t)) for t in vocab.token_bytes])
            assert torch.equal(mask, brute)
            if not mask.any():
                assert g.accepting(state)
                break
            state = g.advance(state, vocab.token_bytes[rng.choice(mask.nonzero().flatten().tolist())])
