"""Hypothesis strategies for the API server's request bodies (shared by its fuzz suites)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
KEYS = st.one_of(st.sampled_from(["metadata", "name", "spec", "data", "a", "b", "$patch", "items", "ports",
                                  "containers", "labels", "finalizers", "$retainKeys", "x"]), st.text(max_size=6))
VALUES: st.SearchStrategy[Any] = st.recursive(
    SCALARS, lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=25)


def nested_text(depth: int, kind: str) -> str:
    """JSON nested ``depth`` levels, as text (the json module cannot write deep values)."""
    return ('{"a":' * depth + "1" + "}" * depth) if kind == "map" else ("[" * depth + "]" * depth)


JSON_TEXT = st.one_of(
    VALUES.map(lambda v: json.dumps(v, allow_nan=True)),
    st.builds(nested_text, st.integers(1, 3000), st.sampled_from(["map", "list"])),
    st.lists(st.sampled_from(['{', '}', '[', ']', ',', ':', '"a"', '"a"', '1', '1e999', '-0', 'NaN', 'Infinity',
                              'true', 'null', ' ', '"\\ud800"', '"\\u0000"', '1' * 30]), max_size=40).map("".join),
)
YAML_TOKENS = ["&a ", "*a", "&b ", "*b", "[", "]", "{", "}", ", ", ": ", "- ", "\n", "  ", "x", "1", ".nan", ".inf",
               "!!binary ", "!!timestamp ", "2001-12-14", "? ", "<<: ", "'", '"', "#", "---\n", "~", "true",
               "!!python/object:os.system ", "%YAML 1.1\n", "!!set ", "!!omap ", "0x1F", "1e999", "|\n", ">\n"]
YAML_TEXT = st.one_of(
    st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join),
    VALUES.map(lambda v: json.dumps(v, allow_nan=True)),  # JSON is YAML
    st.builds(lambda levels, width: "".join(
        f"l{i}: &l{i} [{', '.join(['x'] * width if i == 0 else [f'*l{i - 1}'] * width)}]\n" for i in range(levels)),
        st.integers(1, 14), st.integers(1, 12)),  # alias chains, up to bombs
)
OPERATIONS = st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus", None, 5])
POINTERS = st.one_of(st.sampled_from(["", "/", "/a", "/a/0", "/a/-", "/data", "/data/k", "/metadata/name",
                                      "/x/y", "/x", "/a~1b", "/~2"]), st.text(max_size=8), st.integers())


@st.composite
def json_patch_operation(draw: st.DrawFn) -> Any:
    op: dict[str, Any] = {}
    for key, values in (("op", OPERATIONS), ("path", POINTERS), ("from", POINTERS), ("value", VALUES)):
        if draw(st.integers(0, 4)) > 0:  # mostly present
            op[key] = draw(values)
    return op if draw(st.integers(0, 20)) else draw(VALUES)


JSON_PATCHES = st.one_of(st.lists(json_patch_operation(), max_size=8), VALUES)
