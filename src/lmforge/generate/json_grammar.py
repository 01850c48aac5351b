"""A byte-level recognizer of JSON that matches a compiled schema: the state machine behind
structured outputs.

A state is a set of stacks (a stack per way the bytes so far can be read; `anyOf`, optional
properties and numbers make more than one). A stack is a tuple of frames, innermost last; a frame is
a small tuple, so states hash and compare, and lmforge.generate.token_mask caches a token mask per
state. Feeding a byte maps each stack to the stacks that can follow; no stack left means the byte
breaks the grammar. The frames:

    ("L", text, pos)                   a literal (enum, const, true/false/null): `pos` bytes matched
    ("S", node, phase, chars)          a string: "open", "c" (content), "e" / "u0".. (escapes),
                                       ("m", ...) (inside a UTF-8 character), "end"
    ("N", node, phase, digits)         a number in JSON's grammar: "start", "minus", "zero", "int", ...
    ("O", node, index, phase, pos)     an object: the property index, and "first", "key" (`pos` bytes
                                       of its key), "colon", "val", "in" (the value is the next frame),
                                       "after", "next", "done"
    ("A", node, items, phase)          an array: items so far (counted as far as min/max need)

A frame whose value is whole (`can_end`) may also hand the byte to its parent (`child_done`).

The JSON written is JSON's own grammar with one whitespace rule, outlines' default: at most one space,
after a ':' or a ',' and nowhere else. A small model given free whitespace can spend its whole budget
on it; `{"a": 1, "b": [2, 3]}` and `{"a":1,"b":[2,3]}` are both allowed. Numbers have at most
`MAX_DIGITS` digits (a digit that a '-', '.', 'e' or sign needs is always allowed: no state is a
dead end). Strings hold JSON's escapes and any character from U+0020 up except '"' and '\\',
as UTF-8 (a lead byte, then its continuation bytes); their length is counted in characters (an
escaped surrogate pair is one).

    grammar = JsonGrammar(*compile_schema(schema))
    state = grammar.advance(grammar.initial(), b'{"a": 1')
    grammar.accepting(state)  # False: the object is not closed
"""

from __future__ import annotations

from lmforge.generate.json_schema import Node

MAX_DIGITS = 24  # a double needs 17 significant digits and 3 of exponent
QUOTE, BACKSLASH, SPACE = 0x22, 0x5C, 0x20
ESCAPES = frozenset(b'"\\/bfnrt')
HEX = frozenset(b"0123456789abcdefABCDEF")
LOW_SURROGATE = frozenset(b"cdefCDEF")
DIGITS = frozenset(b"0123456789")
NUMBER_ENDS = frozenset(("zero", "int", "frac", "exp"))
# UTF-8 lead bytes whose second byte has a narrower range (no overlong forms, no surrogates, <= U+10FFFF)
UTF8_SECOND = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}

Frame = tuple
Stack = tuple
State = frozenset


class JsonGrammar:
    def __init__(self, nodes: list[Node], root: int):
        self.nodes, self.root = nodes, root
        self._feed: dict[tuple[Stack, int], tuple[Stack, ...]] = {}

    # ---- states ------------------------------------------------------------------------------

    def initial(self) -> State:
        return frozenset((f,) for f in self.starts(self.root))

    def step(self, state: State, byte: int) -> State:
        """The stacks after `byte` (empty: the byte is not allowed here)."""
        out: set = set()
        for stack in state:
            out.update(self.feed(stack, byte))
        return frozenset(out)

    def advance(self, state: State, data: bytes) -> State:
        for byte in data:
            state = self.step(state, byte)
            if not state:
                break
        return state

    def accepting(self, state: State) -> bool:
        """Whether the bytes so far are a whole value that matches the schema."""
        return any(self._ends(stack) for stack in state)

    def finished(self, state: State) -> bool:
        """Accepting, and no byte may follow: the value is complete."""
        return self.accepting(state) and not any(self.feed(s, b) for s in state for b in range(256))

    def matches(self, data: bytes) -> bool:
        return self.accepting(self.advance(self.initial(), data))

    # ---- one stack, one byte -----------------------------------------------------------------

    def feed(self, stack: Stack, byte: int) -> tuple[Stack, ...]:
        key = (stack, byte)
        out = self._feed.get(key)
        if out is None:
            found: list = []
            self._feed_into(stack, byte, found)
            out = self._feed[key] = tuple(dict.fromkeys(found))
            if len(self._feed) > 200_000:  # a bound on memory for long-lived servers
                self._feed.clear()
        return out

    def _feed_into(self, stack: Stack, byte: int, out: list) -> None:
        top = stack[-1]
        for frames in self.consume(top, byte):
            out.append(stack[:-1] + frames)
        if len(stack) > 1 and self.can_end(top):  # the inner value may be over: the byte is its parent's
            self._feed_into(stack[:-2] + (self.child_done(stack[-2]),), byte, out)

    def _ends(self, stack: Stack) -> bool:
        if not self.can_end(stack[-1]):
            return False
        return len(stack) == 1 or self._ends(stack[:-2] + (self.child_done(stack[-2]),))

    # ---- frames ------------------------------------------------------------------------------

    def starts(self, sid: int) -> list[Frame]:
        """The frames a value of node `sid` may begin with."""
        node = self.nodes[sid]
        kind = node.kind
        if kind == "union":
            return [f for alt in node.options for f in self.starts(alt)]
        if kind == "literal":
            return [("L", text, 0) for text in node.options]
        if kind == "string":
            return [("S", sid, "open", 0)]
        if kind == "number":
            return [("N", sid, "start", 0)]
        if kind == "object":
            return [("O", sid, 0, "open", 0)]
        return [("A", sid, 0, "open")]

    def begin(self, sid: int, byte: int) -> list[tuple]:
        """Frame tuples after the first byte of a value of node `sid`."""
        return [r for f in self.starts(sid) for r in self.consume(f, byte)]

    def can_end(self, f: Frame) -> bool:
        kind = f[0]
        if kind == "L":
            return f[2] == len(f[1])
        if kind == "N":
            return f[2] in NUMBER_ENDS
        if kind == "S":
            return f[2] == "end"
        return f[3] == "done"

    def child_done(self, f: Frame) -> Frame:
        if f[0] == "A":
            return ("A", f[1], self._count(f[1], f[2] + 1), "after")
        if f[3] == "kin":
            return ("O", f[1], f[2], "colon", 0)
        node = self.nodes[f[1]]
        return ("O", f[1], f[2] + 1 if node.props is not None else 0, "after", 0)

    def _count(self, sid: int, n: int) -> int:
        """Items counted only as far as minItems / maxItems need (so states repeat)."""
        node = self.nodes[sid]
        return min(n, node.max if node.max is not None else node.min)

    def consume(self, f: Frame, b: int) -> list[tuple]:
        kind = f[0]
        if kind == "L":
            text, pos = f[1], f[2]
            return [(("L", text, pos + 1),)] if pos < len(text) and text[pos] == b else []
        if kind == "S":
            return self._string(f, b)
        if kind == "N":
            return self._number(f, b)
        if kind == "O":
            return self._object(f, b)
        return self._array(f, b)

    def _string(self, f: Frame, b: int) -> list[tuple]:
        _, sid, phase, n = f
        node = self.nodes[sid]
        if phase == "c":
            if b == QUOTE:
                return [(("S", sid, "end", n),)] if n >= node.min else []
            if b < SPACE or 0x80 <= b < 0xC2 or b > 0xF4:  # a control byte, or no UTF-8 lead byte
                return []
            if node.max is not None and n >= node.max:
                return []
            if b < 0x80:
                return [(("S", sid, "e" if b == BACKSLASH else "c", n + 1),)]
            more = 1 if b < 0xE0 else 2 if b < 0xF0 else 3
            return [(("S", sid, ("m", more, *UTF8_SECOND.get(b, (0x80, 0xBF))), n + 1),)]
        if phase[0] == "m":  # inside a multi-byte character: ("m", bytes to come, lowest, highest next byte)
            if not phase[2] <= b <= phase[3]:
                return []
            return [(("S", sid, ("m", phase[1] - 1, 0x80, 0xBF) if phase[1] > 1 else "c", n),)]
        if phase == "open":
            return [(("S", sid, "c", 0),)] if b == QUOTE else []
        if phase == "e":
            if b in ESCAPES:
                return [(("S", sid, "c", n),)]
            return [(("S", sid, "u0", n),)] if b == ord("u") else []
        if phase[0] == "u":  # \uXXXX: "u1d" after a first digit d, where a surrogate may start
            if b not in HEX:
                return []
            if phase == "u1d" and b in LOW_SURROGATE:  # \uDC00-\uDFFF ends a pair that counted once
                n -= 1
            k = int(phase[1]) + 1
            nxt = "c" if k == 4 else "u1d" if phase == "u0" and b in b"dD" else f"u{k}"
            return [(("S", sid, nxt, n),)]
        return []  # "end"

    def _number(self, f: Frame, b: int) -> list[tuple]:
        _, sid, phase, digits = f
        integer = self.nodes[sid].integer
        nxt = None
        full = digits >= MAX_DIGITS  # no more optional digits, and no '.' or 'e' that would need one
        if b in DIGITS:
            if full and phase in ("int", "frac", "exp"):
                return []
            if phase in ("start", "minus"):
                nxt = "zero" if b == ord("0") else "int"
            elif phase == "int":
                nxt = "int"
            elif phase in ("dot", "frac"):
                nxt = "frac"
            elif phase in ("exp0", "sign", "exp"):
                nxt = "exp"
            return [(("N", sid, nxt, digits + 1),)] if nxt else []
        if b == ord("-") and phase == "start":
            nxt = "minus"
        elif not integer and not full:
            if b == ord(".") and phase in ("zero", "int"):
                nxt = "dot"
            elif b in (ord("e"), ord("E")) and phase in ("zero", "int", "frac"):
                nxt = "exp0"
            elif b in (ord("+"), ord("-")) and phase == "exp0":
                nxt = "sign"
        return [(("N", sid, nxt, digits),)] if nxt else []

    def _keys(self, sid: int, i: int, b: int) -> list[tuple]:
        """The first byte of a key at property index `i` or later (as far as the next required one)."""
        node = self.nodes[sid]
        if node.props is None:
            return [(("O", sid, 0, "kin", 0),) + r for r in self.begin(node.key, b)]
        out = []
        for j in range(i, len(node.props)):
            key, _, required = node.props[j]
            if key[0] == b:
                out.append((("O", sid, j, "key", 1),))
            if required:
                break
        return out

    def _may_close(self, sid: int, i: int) -> bool:
        props = self.nodes[sid].props
        return props is None or not any(required for _, _, required in props[i:])

    def _object(self, f: Frame, b: int) -> list[tuple]:
        _, sid, i, phase, pos = f
        node = self.nodes[sid]
        if phase == "open":
            return [(("O", sid, 0, "first", 0),)] if b == ord("{") else []
        if phase in ("first", "after") and b == ord("}"):
            return [(("O", sid, i, "done", 0),)] if self._may_close(sid, i) else []
        if phase == "first":
            return self._keys(sid, i, b)
        if phase == "after":
            more = node.props is None or i < len(node.props)
            return [(("O", sid, i, "next", 0),)] if b == ord(",") and more else []
        if phase in ("next", "nextsp"):
            if b == SPACE and phase == "next":
                return [(("O", sid, i, "nextsp", 0),)]
            return self._keys(sid, i, b)
        if phase == "key":
            key = node.props[i][0]
            if key[pos] != b:
                return []
            return [(("O", sid, i, "colon", 0) if pos + 1 == len(key) else ("O", sid, i, "key", pos + 1),)]
        if phase == "colon":
            return [(("O", sid, i, "val", 0),)] if b == ord(":") else []
        if phase in ("val", "valsp"):
            if b == SPACE and phase == "val":
                return [(("O", sid, i, "valsp", 0),)]
            value = node.props[i][1] if node.props is not None else node.value
            return [(("O", sid, i, "in", 0),) + r for r in self.begin(value, b)]
        return []  # "in" (the value is on top) or "done"

    def _array(self, f: Frame, b: int) -> list[tuple]:
        _, sid, n, phase = f
        node = self.nodes[sid]
        if phase == "open":
            return [(("A", sid, 0, "first"),)] if b == ord("[") else []
        if phase in ("first", "after") and b == ord("]"):
            return [(("A", sid, n, "done"),)] if n >= node.min else []
        if phase == "after":
            return [(("A", sid, n, "next"),)] if b == ord(",") and (node.max is None or n < node.max) else []
        if phase == "next" and b == SPACE:
            return [(("A", sid, n, "nextsp"),)]
        if phase in ("first", "next", "nextsp") and (node.max is None or n < node.max):
            return [(("A", sid, n, "in"),) + r for r in self.begin(node.value, b)]
        return []
