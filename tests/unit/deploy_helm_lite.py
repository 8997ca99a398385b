"""A small Helm template renderer for exactly the constructs lbd's chart uses.

Used by tests/unit/test_deploy.py when real Helm (the helm-python-sdk package or a ``helm``
binary) is not installed, so that the chart is still rendered and compared with the kustomize
base. When real Helm is installed, a test renders the chart both ways and requires the same
objects, which keeps this renderer honest.

Supported (Go text/template + the Sprig/Helm functions below, nothing else; anything else
raises ``UnsupportedTemplateError`` rather than guessing):
- ``{{ pipeline }}`` with trim markers ``{{-``/``-}}``; comments ``{{/* */}}``;
- ``if``/``with`` ... ``else`` ... ``end``; ``$var := pipeline``;
- operands: ``.``, ``.A.B``, ``$``/``$.A``, ``$var.a``, ``"strings"``, integers;
- functions: default, replace, toYaml, nindent, randAlphaNum, b64enc, dig, and lookup (finds
  what the caller says is in the cluster; nothing by default, as with ``helm template``).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class UnsupportedTemplateError(ValueError):
    """The template uses a construct this renderer does not implement."""


@dataclass
class _Block:
    kind: str  # "root", "if", "with"
    expr: str = ""
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)
    in_else: bool = False

    def add(self, node: Any) -> None:
        (self.orelse if self.in_else else self.body).append(node)


def _lex(template: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) tokens, trim markers applied to the neighbouring text."""
    tokens: list[tuple[str, str]] = []
    i, trim_next = 0, False
    while True:
        start = template.find("{{", i)
        text = template[i : len(template) if start < 0 else start]
        if trim_next:
            text = text.lstrip()
        if start < 0:
            tokens.append(("text", text))
            return tokens
        j = start + 2
        trim_prev = template.startswith("-", j) and template[j + 1 : j + 2].isspace()
        if trim_prev:
            text = text.rstrip()
            j += 1
        tokens.append(("text", text))
        k = j
        while not template.startswith("}}", k):
            if k >= len(template):
                raise UnsupportedTemplateError("unterminated action")
            if template[k] == '"':
                k += 1
                while template[k] != '"':
                    k += 2 if template[k] == "\\" else 1
            k += 1
        body = template[j:k]
        trim_next = body.endswith("-") and body[-2:-1].isspace()
        if trim_next:
            body = body[:-1]
        tokens.append(("action", body.strip()))
        i = k + 2


def _parse(template: str) -> _Block:
    stack = [_Block("root")]
    for kind, value in _lex(template):
        if kind == "text":
            stack[-1].add(("text", value))
        elif value.startswith("/*"):
            continue
        elif value.startswith(("if ", "with ")):
            word, _, expr = value.partition(" ")
            block = _Block(word, expr)
            stack[-1].add(block)
            stack.append(block)
        elif value == "else":
            stack[-1].in_else = True
        elif value == "end":
            stack.pop()
        elif value.startswith(("range", "define", "template", "include", "block", "else if")):
            raise UnsupportedTemplateError(value)
        else:
            stack[-1].add(("action", value))
    if len(stack) != 1:
        raise UnsupportedTemplateError("unbalanced blocks")
    return stack[0]


_TOKEN = re.compile(r'\s*("(?:\\.|[^"\\])*"|\||\(|\)|:=|[^\s|()]+)')


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, dict | list) and not value)


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True).rstrip("\n")


def _indent(width: int, text: str) -> str:
    return "\n".join(" " * width + line for line in text.split("\n"))


def _dig(*args: Any) -> Any:
    """Sprig's dig: ``dig "a" "b" DEFAULT MAP`` is MAP.a.b, or DEFAULT if a key is missing."""
    *keys, default, mapping = args
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return default
        mapping = mapping[key]
    return mapping


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "default": lambda fallback, value=None: value if _truthy(value) else fallback,
    "replace": lambda old, new, text: str(text).replace(old, new),
    "toYaml": _to_yaml,
    "nindent": lambda width, text: "\n" + _indent(width, text),
    "randAlphaNum": lambda n: "".join(
        secrets.choice(string.ascii_letters + string.digits) for _ in range(n)
    ),
    "b64enc": lambda text: base64.b64encode(str(text).encode()).decode(),
    "dig": _dig,
}


class _Renderer:
    def __init__(self, root: dict[str, Any], cluster: dict[tuple[str, ...], Any]) -> None:
        self.root = root
        self.variables: dict[str, Any] = {"$": root}
        self.functions = {
            **FUNCTIONS,
            "lookup": lambda *key: copy.deepcopy(cluster.get(tuple(key), {})),
        }

    def _path(self, base: Any, dotted: str) -> Any:
        for name in filter(None, dotted.split(".")):
            base = base.get(name) if isinstance(base, dict) else None
        return base

    def _operand(self, token: str, dot: Any) -> Any:
        if token.startswith('"'):
            return json.loads(token)
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        if token == ".":
            return dot
        if token.startswith("."):
            return self._path(dot, token)
        if token.startswith("$"):
            name, _, rest = token.partition(".")
            if name not in self.variables:
                raise UnsupportedTemplateError(f"undefined variable {name}")
            return self._path(self.variables[name], rest)
        raise UnsupportedTemplateError(f"operand {token!r}")

    def pipeline(self, expr: str, dot: Any) -> Any:
        tokens = _TOKEN.findall(expr)
        if "(" in tokens or ")" in tokens:
            raise UnsupportedTemplateError(f"parentheses in {expr!r}")
        if len(tokens) > 2 and tokens[1] == ":=":
            self.variables[tokens[0]] = self.pipeline(expr.split(":=", 1)[1], dot)
            return ""
        commands: list[list[str]] = [[]]
        for token in tokens:
            if token == "|":
                commands.append([])
            else:
                commands[-1].append(token)
        result: Any = None
        for n, (head, *rest) in enumerate(commands):
            args = [self._operand(w, dot) for w in rest]
            if n > 0:
                args.append(result)
            if head in self.functions:
                result = self.functions[head](*args)
            elif head[0].isalpha():
                raise UnsupportedTemplateError(f"function {head!r}")
            elif args:
                raise UnsupportedTemplateError(f"arguments after an operand in {expr!r}")
            else:
                result = self._operand(head, dot)
        return result

    def run(self, nodes: list[Any], dot: Any) -> str:
        out: list[str] = []
        for node in nodes:
            if isinstance(node, _Block):
                value = self.pipeline(node.expr, dot)
                if not _truthy(value):
                    out.append(self.run(node.orelse, dot))
                else:
                    out.append(self.run(node.body, value if node.kind == "with" else dot))
            elif node[0] == "text":
                out.append(node[1])
            else:
                out.append(_print(self.pipeline(node[1], dot)))
        return "".join(out)


def _print(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise UnsupportedTemplateError("printing a map or list (use toYaml)")
    return str(value)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_chart(
    chart: Path,
    values: dict[str, Any],
    *,
    name: str,
    namespace: str,
    cluster: dict[tuple[str, ...], Any] | None = None,
) -> str:
    """The chart's templates rendered like ``helm template NAME CHART -n NAMESPACE``.

    ``cluster`` maps ``(apiVersion, kind, namespace, name)`` to the object ``lookup`` finds
    (as ``helm install/upgrade`` would); by default it finds nothing (as ``helm template``).
    """
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    root = {
        "Values": _merge(defaults, values),
        "Release": {"Name": name, "Namespace": namespace, "Service": "Helm"},
        "Chart": {
            "Name": meta["name"],
            "Version": meta["version"],
            "AppVersion": meta["appVersion"],
        },
    }
    parts = []
    for template in sorted((chart / "templates").glob("*.yaml")):
        text = _Renderer(root, cluster or {}).run(_parse(template.read_text()).body, root)
        parts.append(f"---\n# Source: {chart.name}/templates/{template.name}\n{text}\n")
    return "".join(parts)
