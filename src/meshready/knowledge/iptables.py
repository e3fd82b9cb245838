"""What iptables rules ask of the kernel: tables, extensions, implicit matches, iptables-nft translation.

Sources: iptables(8) and iptables-extensions(8); iptables 1.8.9 (Debian bookworm) as measured with
``nft --debug=netlink list ruleset`` after ``iptables-nft-restore`` (see docs/knowledge.md).
"""

from __future__ import annotations

from meshready.knowledge.requests import Family

TABLES = ("filter", "nat", "mangle", "raw", "security")

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

# Verdicts handled by the standard target inside x_tables: no module is asked for.
STANDARD_TARGETS = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE", "CONTINUE"})

# Extensions registered by the core modules themselves, not by an xt_* module. The kernel never
# asks modprobe for them once the core module is there (net/ipv4/netfilter/ip_tables.c registers
# "icmp" and "ERROR"; net/ipv6/netfilter/ip6_tables.c "icmp6" and "ERROR").
CORE_EXTENSIONS = {
    "ipv4": {"icmp": "ip_tables", "ERROR": "ip_tables"},
    "ipv6": {"icmp6": "ip6_tables", "ERROR": "ip6_tables"},
}

# Options that load a protocol match implicitly after ``-p PROTO`` (iptables-extensions(8): "these
# extensions are loaded implicitly if '--protocol tcp' is specified").
PROTOCOL_OPTIONS = {
    "tcp": frozenset(
        {
            "--sport",
            "--source-port",
            "--dport",
            "--destination-port",
            "--syn",
            "--tcp-flags",
            "--tcp-option",
        }
    ),
    "udp": frozenset({"--sport", "--source-port", "--dport", "--destination-port"}),
    "udplite": frozenset({"--sport", "--source-port", "--dport", "--destination-port"}),
    "sctp": frozenset(
        {"--sport", "--source-port", "--dport", "--destination-port", "--chunk-types"}
    ),
    "dccp": frozenset(
        {
            "--sport",
            "--source-port",
            "--dport",
            "--destination-port",
            "--dccp-types",
            "--dccp-option",
        }
    ),
    "icmp": frozenset({"--icmp-type"}),
    "icmpv6": frozenset({"--icmpv6-type"}),
    "ipv6-icmp": frozenset({"--icmpv6-type"}),
}

# ``-p icmpv6`` loads the ``icmp6`` match (libxt_icmp6 registers "icmp6").
PROTOCOL_MATCH_NAME = {"icmpv6": "icmp6", "ipv6-icmp": "icmp6"}

# iptables-nft 1.8.9 expresses these matches (given with an option) with native nf_tables
# expressions instead of nft_compat (measured, see module docstring); it still asks nft_compat for
# their revision first (knowledge/iptables_versions.py). Values are the native expressions used.
NFT_NATIVE_MATCHES: dict[str, tuple[str, ...]] = {
    "tcp": ("payload", "cmp"),
    "udp": ("payload", "cmp"),
    "mark": ("meta", "cmp"),
    "limit": ("limit",),
}

# iptables-nft 1.8.9 sends ``-m state`` as the conntrack match (measured).
NFT_MATCH_ALIASES = {"state": "conntrack"}

# iptables-nft puts a counter on every rule and uses these core expressions for addresses,
# interfaces, protocol and verdicts; only ``counter`` was ever a separate module (nft_counter).
NFT_RULE_EXPRESSIONS = ("counter",)


# Chain types iptables-nft gives to built-in chains (iptables/nft.c, ``builtin_tables``): every
# nat chain is a "nat" chain, mangle OUTPUT is a "route" chain, everything else "filter".
def nft_chain_type(table: str, chain: str) -> str:
    if table == "nat":
        return "nat"
    if table == "mangle" and chain == "OUTPUT":
        return "route"
    return "filter"


# The programs an ``iptables ...`` command line starts with, and the family each one changes
# (iptables(8): "iptables/ip6tables"; the -legacy and -nft variants are the two backends'
# names of the same command, iptables 1.8 ``xtables-legacy-multi``/``xtables-nft-multi``).
PROGRAMS: dict[str, Family] = {
    "iptables": Family.IPV4,
    "iptables-legacy": Family.IPV4,
    "iptables-nft": Family.IPV4,
    "ip6tables": Family.IPV6,
    "ip6tables-legacy": Family.IPV6,
    "ip6tables-nft": Family.IPV6,
}

# iptables(8) OPTIONS: the option naming the table a command works on, and those that make it wait
# for the xtables lock ("-w, --wait [seconds]", "-W, --wait-interval microseconds").
TABLE_OPTIONS = frozenset({"-t", "--table"})
WAIT_OPTIONS = frozenset({"-w", "--wait", "-W", "--wait-interval"})

# iptables(8) TARGETS: the options that name the chain or target a rule jumps (or goes) to.
JUMP_OPTIONS = frozenset({"-j", "--jump", "-g", "--goto"})
GOTO_OPTIONS = frozenset({"-g", "--goto"})

# iptables(8) COMMANDS that read or change rules and chains, every spelling -> its short form.
# Listing commands (-L, -S) are not here: rules files and logs never apply them.
COMMANDS: dict[str, str] = {
    "-A": "-A",
    "--append": "-A",
    "-I": "-I",
    "--insert": "-I",
    "-R": "-R",
    "--replace": "-R",
    "-D": "-D",
    "--delete": "-D",
    "-N": "-N",
    "--new-chain": "-N",
    "-X": "-X",
    "--delete-chain": "-X",
    "-F": "-F",
    "--flush": "-F",
    "-Z": "-Z",
    "--zero": "-Z",
    "-P": "-P",
    "--policy": "-P",
    "-E": "-E",
    "--rename-chain": "-E",
}

# Commands followed by a chain and a rule specification (short forms); -I, -R and -D may put a
# rule number between the two (iptables(8): "-I chain [rulenum] rule-specification").
RULE_COMMANDS = frozenset({"-A", "-I", "-R", "-D"})
NUMBERED_RULE_COMMANDS = frozenset({"-I", "-R", "-D"})

# Commands on whole chains (short forms) and how many arguments they take; -1: an optional chain
# (iptables(8): "-X [chain]", "-F [chain]", "-Z [chain [rulenum]]", "-P chain target",
# "-E old-chain new-chain").
CHAIN_COMMAND_ARGS: dict[str, int] = {"-N": 1, "-X": -1, "-F": -1, "-Z": -1, "-P": 2, "-E": 2}
