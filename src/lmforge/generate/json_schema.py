"""JSON Schema -> the grammar nodes that constrained decoding follows (structured outputs).

The OpenAI API's `response_format` asks for a reply that is JSON (`json_object`) or JSON that
matches a schema (`json_schema`); vLLM, SGLang and LMDeploy serve it by masking, at each step, every
token that would leave the grammar (outlines, xgrammar). This module turns a schema into a few kinds
of nodes that lmforge.generate.json_grammar walks byte by byte:

    object   listed properties in their order (required ones always, optional ones may be left
             out), or, with no `properties`, any keys with values of `additionalProperties`
    array    items of one schema, minItems / maxItems
    string   minLength / maxLength (in characters)
    number   integer or number (JSON's own grammar)
    literal  enum / const / true / false / null: the value's JSON text, one of a list
    union    anyOf / oneOf / a list of types / `{}` (any JSON value)

What is supported is enforced exactly; what is not is refused up front, naming the keyword and its
place in the schema (`properties.age.minimum`), rather than generated and silently violated.
Annotations (`title`, `description`, `default`, `examples`, ...) are ignored. Only listed properties
are generated (what OpenAI's strict mode asks for: `additionalProperties: false`); `$ref` to
`#/$defs/...` or `#/definitions/...` works, recursion included (pydantic's nested models).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment",
                         "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "strict"})
HANDLED = frozenset({"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
                     "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength"})
TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


class SchemaError(ValueError):
    """A schema lmforge cannot enforce; `path` is where (e.g. 'properties.age.minimum')."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path, self.message = path, message


@dataclass(frozen=True, slots=True)
class Node:
    kind: str                                   # object / array / string / number / literal / union
    props: tuple | None = None                  # object: ((key JSON bytes, node id, required), ...)
    key: int = -1                               # object without props: the key's string node
    value: int = -1                             # object without props: the values' node; array: items
    min: int = 0                                # array: minItems; string: minLength
    max: int | None = None                      # array: maxItems; string: maxLength (None: no limit)
    integer: bool = False                       # number: integers only
    options: tuple = ()                         # literal: JSON texts as bytes; union: node ids


def _join(path: str, key: str) -> str:
    """`key`'s place under `path` ('properties.age' + 'minimum'), for error messages."""
    return f"{path}.{key}" if path else key


def _literal(value) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class _Compiler:
    def __init__(self, root: dict):
        self.root, self.nodes, self.refs = root, [], {}

    def add(self, node: Node | None) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def any(self) -> int:
        """Any JSON value (its own node ids, made once)."""
        if "#any" not in self.refs:
            sid = self.refs["#any"] = self.add(None)
            string = self.add(Node("string"))
            alts = (self.add(Node("object", key=string, value=sid)), self.add(Node("array", value=sid)), string,
                    self.add(Node("number")), self.add(Node("literal", options=(b"true", b"false", b"null"))))
            self.nodes[sid] = Node("union", options=alts)
        return self.refs["#any"]

    def ref(self, ref: str, path: str) -> int:
        if ref not in self.refs:
            parts = ref.split("/")
            if len(parts) != 3 or parts[0] != "#" or parts[1] not in ("$defs", "definitions"):
                raise SchemaError(path, f"$ref {ref!r}: only '#/$defs/NAME' and '#/definitions/NAME' are supported")
            target = (self.root.get(parts[1]) or {}).get(parts[2])
            if not isinstance(target, dict):
                raise SchemaError(path, f"$ref {ref!r} names no schema in the document's {parts[1]}")
            self.refs[ref] = sid = self.add(None)  # before the body: a schema may refer to itself
            self.nodes[sid] = self.nodes[self.compile(target, f"{parts[1]}.{parts[2]}")]
        return self.refs[ref]

    def compile(self, schema, path: str = "") -> int:
        if schema is True or schema == {}:
            return self.any()
        if not isinstance(schema, dict):
            raise SchemaError(path, f"a schema must be an object, got {json.dumps(schema)[:60]}")
        for key in schema:
            if key not in HANDLED and key not in ANNOTATIONS:
                where = _join(path, key)
                raise SchemaError(where, f"{key!r} is not supported by lmforge's constrained decoding; "
                                         f"supported: {', '.join(sorted(HANDLED))} (annotations such as "
                                         "'description' are ignored)")
        at = (lambda k: _join(path, k))
        if "$ref" in schema:
            return self.ref(schema["$ref"], at("$ref"))
        if "const" in schema:
            return self.add(Node("literal", options=(_literal(schema["const"]),)))
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError(at("enum"), "enum must be a non-empty list")
            return self.add(Node("literal", options=tuple(dict.fromkeys(_literal(v) for v in values))))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                alts = schema[key]
                if not isinstance(alts, list) or not alts:
                    raise SchemaError(at(key), f"{key} must be a non-empty list of schemas")
                return self.add(Node("union", options=tuple(self.compile(s, f"{at(key)}.{i}")
                                                            for i, s in enumerate(alts))))
        if "allOf" in schema:
            if not isinstance(schema["allOf"], list) or len(schema["allOf"]) != 1:
                raise SchemaError(at("allOf"), "allOf is supported with one schema only (pydantic's wrapped $ref)")
            return self.compile(schema["allOf"][0], at("allOf.0"))
        types = schema.get("type")
        if types is None:
            return self.any()
        if isinstance(types, list):
            if not types:
                raise SchemaError(at("type"), "type must not be an empty list")
            return self.add(Node("union", options=tuple(self.typed(schema, t, path) for t in types)))
        return self.typed(schema, types, path)

    def typed(self, schema: dict, kind, path: str) -> int:
        at = (lambda k: _join(path, k))
        if kind not in TYPES:
            raise SchemaError(at("type"), f"unknown type {kind!r}; one of {', '.join(TYPES)}")
        if kind in ("number", "integer"):
            return self.add(Node("number", integer=kind == "integer"))
        if kind == "boolean":
            return self.add(Node("literal", options=(b"true", b"false")))
        if kind == "null":
            return self.add(Node("literal", options=(b"null",)))
        if kind == "string":
            lo, hi = self.bounds(schema, "minLength", "maxLength", path)
            return self.add(Node("string", min=lo, max=hi))
        if kind == "array":
            lo, hi = self.bounds(schema, "minItems", "maxItems", path)
            items = schema.get("items", True)
            if isinstance(items, list):
                raise SchemaError(at("items"), "items must be one schema (tuples are not supported)")
            return self.add(Node("array", value=self.compile(items, at("items")), min=lo, max=hi))
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties", True)
            value = self.compile(extra if isinstance(extra, dict) else True, at("additionalProperties"))
            if extra is False:  # no properties and none allowed: {}
                return self.add(Node("object", props=()))
            return self.add(Node("object", key=self.add(Node("string")), value=value))
        if not isinstance(props, dict):
            raise SchemaError(at("properties"), "properties must be an object of schemas")
        required = schema.get("required", [])
        unknown = [r for r in required if r not in props]
        if unknown:
            raise SchemaError(at("required"), f"{unknown} are required but not among the properties {list(props)}")
        return self.add(Node("object", props=tuple(
            (_literal(str(name)), self.compile(sub, f"{at('properties')}.{name}"), name in required)
            for name, sub in props.items())))

    @staticmethod
    def bounds(schema: dict, lo_key: str, hi_key: str, path: str) -> tuple[int, int | None]:
        lo, hi = schema.get(lo_key, 0), schema.get(hi_key)
        for key, value in ((lo_key, lo), (hi_key, hi)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise SchemaError(_join(path, key), f"must be an integer >= 0, got {value!r}")
        if hi is not None and hi < lo:
            raise SchemaError(_join(path, hi_key), f"{hi_key}={hi} is below {lo_key}={lo}")
        return lo, hi


def compile_schema(schema) -> tuple[list[Node], int]:
    """(nodes, root id) of `schema` (a dict, or True / {} for any JSON value); SchemaError if lmforge
    cannot enforce it."""
    compiler = _Compiler(schema if isinstance(schema, dict) else {})
    root = compiler.compile(schema)
    return compiler.nodes, root
