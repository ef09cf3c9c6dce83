"""Reading params.yaml strictly, and saying in one line what is wrong with it.

Strict: a duplicate key is an error, and `1e-3` is a float (YAML 1.2), not a string. A
validation error becomes the key path it is about and the problem, in the user's words.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.common.errors import PipelineError


class ParamsError(PipelineError):
    """A problem in params.yaml, located by its key path."""

    def __init__(self, path: Path | str, key: str, problem: str):
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {problem}")
        self.key = key


class _StrictLoader(yaml.SafeLoader):
    """YAML loader that rejects duplicate keys and reads `1e-3` as a float (YAML 1.2 style)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)
# The float resolver above also matches plain integers; put int back in front for those.
for _first, _resolvers in _StrictLoader.yaml_implicit_resolvers.items():
    _resolvers.sort(key=lambda r: r[0] != "tag:yaml.org,2002:int")


def read_yaml(path: Path) -> Any:
    """The file's contents as Python values; a ParamsError if it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(path, "", f"cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ParamsError(path, "", f"byte {exc.start}: not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamsError(path, "", f"{line}invalid YAML ({problem})") from None


def top_level_problem(raw: dict, expected: list[str]) -> str:
    unknown = [k for k in raw if k not in expected]
    if unknown:
        return f"unknown section {unknown[0]!r} (expected: {', '.join(expected)})"
    missing = [k for k in expected if k not in raw]
    return f"missing section {missing[0]!r}"


UNKNOWN_KEY = ("unexpected_keyword_argument", "extra_forbidden")
MISSING_KEY = ("missing", "missing_keyword_argument")


def describe(errors: list[dict], raw: dict) -> tuple[str, str]:
    """(key path, problem) for the error a user should hear about first.

    A typo shows up twice, as the unknown key and as the key it was meant to be, missing: name
    the unknown one, and suggest the missing key beside it that reads most alike.
    """
    error = next((e for e in errors if e["type"] in UNKNOWN_KEY), errors[0])
    loc = [str(part) for part in error["loc"]]  # tuple items come as indices
    key = ".".join(loc)
    kind = error["type"]
    if kind in UNKNOWN_KEY:
        siblings = [e for e in errors if e["type"] in MISSING_KEY and [str(p) for p in e["loc"][:-1]] == loc[:-1]]
        missing = [str(e["loc"][-1]) for e in siblings]
        near = difflib.get_close_matches(loc[-1], missing, n=1, cutoff=0.6)
        return key, "unknown key" + (f" (did you mean {near[0]}?)" if near else "")
    if kind == "missing" and loc[-1].isdigit():
        return ".".join(loc[:-1]), f"too few values: item {loc[-1]} is missing"
    if kind in MISSING_KEY:
        return key, "missing key"
    value = _lookup(raw, loc)
    if kind in ("tuple_type", "list_type") and isinstance(value, (str, int, float)):
        return key, f"expected a list in brackets, e.g. [{value}] (got {value!r})"
    shown = f" (got {value!r})" if value is not _MISSING else ""
    return key, f"{error['msg']}{shown}"


_MISSING = object()


def _lookup(raw: Any, loc: list[str]) -> Any:
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def with_values(text: str, values: dict[str, Any]) -> str:
    """params.yaml's text with `key.path: value` pairs changed, its comments and layout kept.

    Only existing keys: a new one would be a typo. Raises KeyError naming the first unknown path.
    """
    import io

    from ruamel.yaml import YAML

    document = YAML()  # round-trip: comments, order and flow style stay
    document.width = 4096  # and long lines are not wrapped
    data = document.load(text)
    for path, value in values.items():
        *parents, last = path.split(".")
        node = data
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise KeyError(path)
            node = node[part]
        if not isinstance(node, dict) or last not in node:
            raise KeyError(path)
        node[last] = value
    out = io.StringIO()
    document.dump(data, out)
    return out.getvalue()
