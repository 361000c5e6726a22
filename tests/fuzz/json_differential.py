#!/usr/bin/env python3
"""Differential check of paygate's strict JSON reader against Python's json module.

    json_differential.py VERDICTS.jsonl

VERDICTS comes from json_verdicts (one line per input file: our verdict, and our canonical form
or our error). For every input:

- accepted by us: Python must accept it too, it must break none of our strictness rules, Python
  must read the same value from the input and from our canonical form (numbers compared as exact
  decimals), and our canonical form must be exactly the one ipc/include/paygate/json.hpp
  documents (computed here independently).
- refused by us: Python must refuse it too (as invalid UTF-8 or invalid JSON; NaN and Infinity
  are not JSON), or it must break one of the documented strictness rules, and our message must
  name a rule it breaks.

The strictness rules (json.hpp, docs/api.md): duplicate keys; nesting deeper than 32 containers;
a string or key over 64 KiB (UTF-8 bytes); \\u escapes of lone surrogates.
Exit status 1 with one line per disagreement, 0 when there is none.
"""

import json
import re
import sys

MAX_DEPTH = 32
MAX_STRING_BYTES = 64 * 1024

if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)   # exponents of thousands of digits are still exact integers

NUMBER = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([-+]?[0-9]+))?\Z")


class Num:
    """A JSON number as an exact decimal: digits (no leading or trailing zeros) times 10**exp."""

    __slots__ = ("negative", "digits", "exp")

    def __init__(self, lexeme: str):
        m = NUMBER.match(lexeme)
        if not m:
            raise ValueError(f"Python's json gave a number lexeme outside the grammar: {lexeme!r}")
        sign, whole, frac, exp = m.groups()
        frac = frac or ""
        digits = (whole + frac).lstrip("0")
        e = int(exp or "0") - len(frac)
        stripped = digits.rstrip("0")
        e += len(digits) - len(stripped)
        if not stripped:                      # every zero is the same zero, -0 included
            self.negative, self.digits, self.exp = False, "", 0
        else:
            self.negative, self.digits, self.exp = sign == "-", stripped, e

    def __eq__(self, other):
        return isinstance(other, Num) and (self.negative, self.digits, self.exp) == (
            other.negative, other.digits, other.exp)

    def __hash__(self):
        return hash((self.negative, self.digits, self.exp))

    def canonical(self) -> str:
        """json.hpp's rule: shortest digits, plain decimal when |exponent| <= 20, else digits e exp."""
        if not self.digits:
            return "0"
        sign = "-" if self.negative else ""
        d, e = self.digits, self.exp
        if e > 20 or e < -20:
            return f"{sign}{d}e{e}"
        if e >= 0:
            return sign + d + "0" * e
        k = -e
        if len(d) > k:
            return f"{sign}{d[:-k]}.{d[-k:]}"
        return f"{sign}0.{'0' * (k - len(d))}{d}"


class Obj:
    """An object as Python read it, every member kept (duplicates too)."""

    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


def refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def python_reads(text: str):
    return json.loads(text, parse_int=Num, parse_float=Num, parse_constant=refuse_constant,
                      object_pairs_hook=Obj)


def broken_rules(value) -> set:
    """The strictness rules `value` (as Python read it) breaks."""
    broken = set()
    stack = [(value, 0)]
    while stack:
        v, level = stack.pop()
        if isinstance(v, str):
            if len(v.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES:
                broken.add("string")
            if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
                broken.add("surrogate")
        elif isinstance(v, list):
            if level + 1 > MAX_DEPTH:
                broken.add("depth")
            stack.extend((item, level + 1) for item in v)
        elif isinstance(v, Obj):
            if level + 1 > MAX_DEPTH:
                broken.add("depth")
            keys = [k for k, _ in v.pairs]
            if len(set(keys)) != len(keys):
                broken.add("duplicate")
            for k, item in v.pairs:
                stack.append((k, level + 1))   # a key is a string: same rules, no depth of its own
                stack.append((item, level + 1))
    return broken


def plain(value):
    """Comparable form: objects as dicts (only ever called when there are no duplicates)."""
    if isinstance(value, Obj):
        return {k: plain(v) for k, v in value.pairs}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def canonical_string(s: str) -> str:
    out = ['"']
    for c in s:
        if c in SHORT_ESCAPES:
            out.append(SHORT_ESCAPES[c])
        elif ord(c) < 0x20:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def canonical(value) -> str:
    """json.hpp's canonical form: no whitespace, keys sorted by UTF-8 bytes, minimal escapes."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Num):
        return value.canonical()
    if isinstance(value, str):
        return canonical_string(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, Obj):
        members = sorted(value.pairs, key=lambda kv: kv[0].encode("utf-8"))
        return "{" + ",".join(canonical_string(k) + ":" + canonical(v) for k, v in members) + "}"
    raise TypeError(type(value))


# Which rule our refusal names (json.cpp's messages).
MESSAGE_RULES = [("duplicate key", "duplicate"), ("nesting deeper than", "depth"),
                 ("string longer than", "string"), ("surrogate", "surrogate")]


def check(record) -> str:
    """'' when we agree with Python, else what is wrong."""
    with open(record["file"], "rb") as f:
        data = f.read()
    python_error = None
    value = None
    broken = set()
    try:
        value = python_reads(data.decode("utf-8"))   # strict UTF-8: no BOM skipping, no surrogates
    except RecursionError:
        python_error = "nesting too deep for Python"   # hundreds of levels: beyond our 32 as well
        broken = {"depth"}
    except (UnicodeDecodeError, ValueError) as e:      # JSONDecodeError is a ValueError
        python_error = f"{type(e).__name__}: {e}"
    if python_error is None:
        broken = broken_rules(value)

    if record["accepted"]:
        if python_error is not None:
            return f"accepted, but Python refuses it ({python_error})"
        if broken:
            return f"accepted, but it breaks our rules: {sorted(broken)}"
        ours = record["canonical"]
        try:
            ours_value = python_reads(ours)
        except (ValueError, RecursionError) as e:
            return f"our canonical form {ours[:200]!r} is not JSON for Python ({e})"
        if plain(ours_value) != plain(value):
            return f"our canonical form {ours[:200]!r} is not the value Python reads"
        expected = canonical(value)
        if ours != expected:
            return f"canonical form {ours[:200]!r}, json.hpp's rule gives {expected[:200]!r}"
        return ""

    if python_error is not None and "depth" not in broken:
        return ""   # invalid for Python as well
    named = {rule for part, rule in MESSAGE_RULES if part in record["error"]}
    if not broken:
        return f"refused ({record['error']} at {record['offset']}), but it is valid JSON and breaks no rule of ours"
    if not named & broken:
        return f"refused with {record['error']!r}, but the rules it breaks are {sorted(broken)}"
    return ""


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    counts = {"accepted": 0, "refused": 0}
    problems = 0
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            counts["accepted" if record["accepted"] else "refused"] += 1
            problem = check(record)
            if problem:
                problems += 1
                print(f"json_differential: {record['file']}: {problem}")
    total = counts["accepted"] + counts["refused"]
    print(f"json_differential: {total} inputs ({counts['accepted']} accepted, {counts['refused']} refused), "
          f"{problems} disagreements with Python's json")
    return 1 if problems or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
