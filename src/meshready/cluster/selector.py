"""Label selectors in kubectl's syntax, checked here so a typo is a one-line error (exit 2) and not
an API server's 400, and passed on as lightkube operators.

Grammar (k8s.io/apimachinery/pkg/labels/selector.go, "Parse"): requirements separated by commas,
each one of ``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``,
``key in (v1,v2)``, ``key notin (v1,v2)``. Keys are qualified names (optional DNS prefix and
``/``); values are label values (at most 63 characters of ``[A-Za-z0-9._-]``, alphanumeric at both
ends) or empty.
"""

from __future__ import annotations

import re
from typing import Any

from lightkube import operators

from meshready.errors import InputError

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_SET = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_CMP = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)\s*$")
_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)\s*$")


def _split(text: str) -> list[str]:
    """Requirements: commas split them, except inside ``( )``."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if depth:
        raise ValueError("unbalanced '('")
    parts.append(current)
    return parts


def _key(key: str) -> str:
    if len(key.rpartition("/")[2]) > 63 or not _KEY.match(key):
        raise ValueError(f"invalid label key {key!r}")
    return key


def _value(value: str) -> str:
    if not _VALUE.match(value):
        raise ValueError(f"invalid label value {value!r}")
    return value


def parse_selector(text: str, source: str = "-l") -> list[tuple[str, Any]]:
    """(key, lightkube operator) pairs; InputError when invalid. A list, not a dict, because one
    key may carry several requirements (``a!=x,a!=y``): lightkube's build_selector takes both,
    though ``Client.list`` is annotated with the dict form only (see ``as_labels``)."""
    pairs: list[tuple[str, Any]] = []
    try:
        for part in _split(text):
            if not part.strip():
                raise ValueError("empty requirement")
            if m := _SET.match(part):
                values = [v.strip() for v in m["values"].split(",")]
                if not values or any(not v for v in values):
                    raise ValueError(f"empty value in {part.strip()!r}")
                key = _key(m["key"])
                checked = [_value(v) for v in values]
                in_set = m["op"] == "in"
                pairs.append((key, operators.in_(checked) if in_set else operators.not_in(checked)))
            elif m := _CMP.match(part):
                key, value = _key(m["key"]), _value(m["value"])
                equal = m["op"] != "!="
                pairs.append((key, operators.equal(value) if equal else operators.not_equal(value)))
            elif m := _EXISTS.match(part):
                key = _key(m["key"])
                pairs.append((key, operators.not_exists() if m["neg"] else operators.exists()))
            else:
                raise ValueError(f"cannot parse {part.strip()!r}")
    except ValueError as exc:
        raise InputError(
            source,
            f"{exc} in label selector {text!r} (kubectl syntax: k=v, k!=v, k in (a,b), "
            "k notin (a,b), k, !k; comma-separated)",
        ) from exc
    return pairs


def selector_text(pairs: list[tuple[str, Any]]) -> str:
    """The selector as the API server receives it."""
    from lightkube.core.selector import build_selector

    return build_selector(pairs)


def as_labels(pairs: list[tuple[str, Any]]) -> Any:
    """PAIRS for ``Client.list(labels=...)``, which passes them to build_selector (a list is
    accepted there: lightkube/core/selector.py); None for no selector."""
    return pairs or None
