"""What nft rules ask of the kernel: chain types and expressions.

Sources: nft(8); net/netfilter/nf_tables_core.c (the expressions built into nf_tables, never requested);
net/netfilter/nft_*.c ``MODULE_ALIAS_NFT_EXPR``/``MODULE_ALIAS_NFT_AF_EXPR`` (the modular ones).
"""

from __future__ import annotations

# Expressions registered by nf_tables itself (nf_tables_core.c ``nf_tables_core_module_init``): the
# kernel finds them without asking modprobe. Older kernels had some of these as modules (counter,
# set backends, ...): when a real module index has an alias for one, the alias wins.
CORE_EXPRESSIONS = frozenset(
    {
        "immediate",
        "cmp",
        "lookup",
        "bitwise",
        "byteorder",
        "payload",
        "dynset",
        "range",
        "meta",
        "rt",
        "exthdr",
        "last",
        "counter",
        "objref",
        "inner",
    }
)

# Chain types built into nf_tables: "filter" always; "route" since it was merged into the core
# (nft_chain_route.o in nf_tables-objs). "nat" is the nft_chain_nat module.
CORE_CHAIN_TYPES = frozenset({"filter", "route"})

# Statement or selector keyword in nft syntax -> expression it compiles to. Only keywords that map
# to a possibly modular expression are listed; payload/meta selectors are core.
KEYWORD_EXPRESSIONS: dict[str, str] = {
    "counter": "counter",
    "redirect": "redir",
    "masquerade": "masq",
    "dnat": "nat",
    "snat": "nat",
    "tproxy": "tproxy",
    "ct": "ct",
    "notrack": "ct",
    "socket": "socket",
    "reject": "reject",
    "log": "log",
    "limit": "limit",
    "quota": "quota",
    "queue": "queue",
    "fib": "fib",
    "numgen": "numgen",
    "jhash": "hash",
    "symhash": "hash",
    "osf": "osf",
    "synproxy": "synproxy",
    "fwd": "fwd",
    "dup": "dup",
    "tunnel": "tunnel",
    "xfrm": "xfrm",
    "connlimit": "connlimit",
    "flow": "flow_offload",
}

# Families whose "reject" and "fib" are family-specific modules (nft_reject_inet, nft_fib_inet, ...);
# the kernel's family-first request ("nft-expr-1-reject") finds them through their aliases.
FAMILY_NAMES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")

# nft(8) command words: the verbs that change a ruleset, every verb, and the object kinds.
CHANGE_VERBS = frozenset(
    {"add", "create", "insert", "replace", "delete", "destroy", "flush", "reset"}
)
COMMAND_VERBS = CHANGE_VERBS | {"list", "rename", "describe", "monitor", "export", "import"}
OBJECT_KINDS = frozenset(
    {
        "table",
        "chain",
        "rule",
        "set",
        "map",
        "element",
        "counter",
        "quota",
        "limit",
        "ct",
        "flowtable",
        "secmark",
        "synproxy",
        "tunnel",
    }
)

# Verdict statements (nft(8) "VERDICT STATEMENT"); jump and goto are followed by a chain.
VERDICTS = frozenset({"accept", "drop", "queue", "continue", "return", "jump", "goto"})
