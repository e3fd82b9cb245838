"""``node/NAME`` arguments, as kubectl spells them (``node/``, ``nodes/``, ``no/``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from meshready.errors import InputError

_PREFIXES = ("node/", "nodes/", "no/")
# A Node's name is a DNS subdomain (RFC 1123), at most 253 characters.
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def is_node_target(arg: str) -> bool:
    return arg.startswith(_PREFIXES)


def node_names(args: Sequence[str]) -> tuple[str, ...]:
    """The node names of ARGS (each ``node/NAME``), in order, each once; InputError otherwise."""
    names: list[str] = []
    for arg in args:
        if not is_node_target(arg):
            raise InputError(arg, "expected node/NAME (as kubectl names a node)")
        name = arg.split("/", 1)[1]
        if not name or len(name) > 253 or not _NODE_NAME.match(name):
            raise InputError(arg, "not a valid node name (a lowercase DNS subdomain)")
        if name not in names:
            names.append(name)
    return tuple(names)
