"""Built-in knowledge of the netfilter modules: Kconfig symbol, aliases and dependencies.

Used when no module index is at hand (offline analysis from ``lsmod`` alone, or a kernel built
without module support, where only the kernel config tells what is built in). With a real
``modules.dep``/``modules.alias`` the kernel's own data always wins; tests/knowledge checks this
table against the real Debian 6.1 index.

Symbols: net/netfilter/Makefile, net/ipv4/netfilter/Makefile, net/ipv6/netfilter/Makefile,
net/bridge/Makefile, lib/Makefile. Dependencies and aliases: ``modinfo`` of Debian's 6.1 kernel
(linux-image-6.1.0-*-cloud-amd64), for kernels from 5.1 on; older names are in ``renames``.
``CONFIG_NETFILTER_XTABLES`` builds both x_tables and xt_tcpudp; ``CONFIG_NFT_NAT`` builds both
nft_chain_nat and nft_nat.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class ModuleInfo:
    name: str
    symbol: str
    deps: tuple[str, ...]
    aliases: tuple[str, ...]


# module | Kconfig symbol (without CONFIG_) | direct dependencies | aliases (module requests it answers)
_TABLE = """
x_tables         | NETFILTER_XTABLES              | -                                   | -
xt_tcpudp        | NETFILTER_XTABLES              | x_tables                            | xt_tcp xt_udp ipt_tcp ipt_udp ip6t_tcp ip6t_udp
ip_tables        | IP_NF_IPTABLES                 | x_tables                            | -
ip6_tables       | IP6_NF_IPTABLES                | x_tables                            | -
iptable_filter   | IP_NF_FILTER                   | ip_tables x_tables                  | -
iptable_nat      | IP_NF_NAT                      | ip_tables nf_nat x_tables           | -
iptable_mangle   | IP_NF_MANGLE                   | ip_tables x_tables                  | -
iptable_raw      | IP_NF_RAW                      | ip_tables x_tables                  | -
iptable_security | IP_NF_SECURITY                 | ip_tables x_tables                  | -
ip6table_filter  | IP6_NF_FILTER                  | ip6_tables x_tables                 | -
ip6table_nat     | IP6_NF_NAT                     | ip6_tables nf_nat x_tables          | -
ip6table_mangle  | IP6_NF_MANGLE                  | ip6_tables x_tables                 | -
ip6table_raw     | IP6_NF_RAW                     | ip6_tables x_tables                 | -
ip6table_security| IP6_NF_SECURITY                | ip6_tables x_tables                 | -
libcrc32c        | LIBCRC32C                      | -                                   | -
nf_defrag_ipv4   | NF_DEFRAG_IPV4                 | -                                   | -
nf_defrag_ipv6   | NF_DEFRAG_IPV6                 | -                                   | -
nf_conntrack     | NF_CONNTRACK                   | nf_defrag_ipv6 nf_defrag_ipv4 libcrc32c | -
nf_nat           | NF_NAT                         | nf_conntrack libcrc32c              | -
nf_tproxy_ipv4   | NF_TPROXY_IPV4                 | -                                   | -
nf_tproxy_ipv6   | NF_TPROXY_IPV6                 | -                                   | -
nf_socket_ipv4   | NF_SOCKET_IPV4                 | -                                   | -
nf_socket_ipv6   | NF_SOCKET_IPV6                 | -                                   | -
nf_reject_ipv4   | NF_REJECT_IPV4                 | -                                   | -
nf_reject_ipv6   | NF_REJECT_IPV6                 | -                                   | -
nf_log_syslog    | NF_LOG_SYSLOG                  | -                                   | -
xt_REDIRECT      | NETFILTER_XT_TARGET_REDIRECT   | nf_nat x_tables                     | ipt_REDIRECT ip6t_REDIRECT
xt_owner         | NETFILTER_XT_MATCH_OWNER       | x_tables                            | ipt_owner ip6t_owner
xt_multiport     | NETFILTER_XT_MATCH_MULTIPORT   | x_tables                            | ipt_multiport ip6t_multiport
xt_CT            | NETFILTER_XT_TARGET_CT         | nf_conntrack x_tables               | ipt_CT ip6t_CT ipt_NOTRACK ip6t_NOTRACK
xt_conntrack     | NETFILTER_XT_MATCH_CONNTRACK   | nf_conntrack x_tables               | ipt_conntrack ip6t_conntrack
xt_state         | NETFILTER_XT_MATCH_STATE       | nf_conntrack x_tables               | ipt_state ip6t_state
xt_mark          | NETFILTER_XT_MARK              | x_tables                            | ipt_mark ip6t_mark ipt_MARK ip6t_MARK arpt_MARK
xt_connmark      | NETFILTER_XT_CONNMARK          | nf_conntrack x_tables               | ipt_CONNMARK ip6t_CONNMARK ipt_connmark ip6t_connmark
xt_TPROXY        | NETFILTER_XT_TARGET_TPROXY     | nf_tproxy_ipv6 nf_tproxy_ipv4 nf_defrag_ipv6 nf_defrag_ipv4 x_tables | ipt_TPROXY ip6t_TPROXY
xt_socket        | NETFILTER_XT_MATCH_SOCKET      | nf_socket_ipv6 nf_socket_ipv4 nf_defrag_ipv6 nf_defrag_ipv4 x_tables | ipt_socket ip6t_socket
xt_comment       | NETFILTER_XT_MATCH_COMMENT     | x_tables                            | ipt_comment ip6t_comment
xt_addrtype      | NETFILTER_XT_MATCH_ADDRTYPE    | x_tables                            | ipt_addrtype ip6t_addrtype
xt_nat           | NETFILTER_XT_NAT               | nf_nat x_tables                     | ipt_SNAT ipt_DNAT ip6t_SNAT ip6t_DNAT
xt_MASQUERADE    | NETFILTER_XT_TARGET_MASQUERADE | nf_nat x_tables                     | ipt_MASQUERADE ip6t_MASQUERADE
xt_set           | NETFILTER_XT_SET               | ip_set x_tables                     | ipt_set ip6t_set ipt_SET ip6t_SET
xt_LOG           | NETFILTER_XT_TARGET_LOG        | nf_log_syslog x_tables              | ipt_LOG ip6t_LOG
xt_limit         | NETFILTER_XT_MATCH_LIMIT       | x_tables                            | ipt_limit ip6t_limit
xt_pkttype       | NETFILTER_XT_MATCH_PKTTYPE     | x_tables                            | ipt_pkttype ip6t_pkttype
xt_physdev       | NETFILTER_XT_MATCH_PHYSDEV     | x_tables                            | ipt_physdev ip6t_physdev
xt_iprange       | NETFILTER_XT_MATCH_IPRANGE     | x_tables                            | ipt_iprange ip6t_iprange
xt_statistic     | NETFILTER_XT_MATCH_STATISTIC   | x_tables                            | ipt_statistic ip6t_statistic
xt_NFQUEUE       | NETFILTER_XT_TARGET_NFQUEUE    | x_tables                            | ipt_NFQUEUE ip6t_NFQUEUE
xt_TCPMSS        | NETFILTER_XT_TARGET_TCPMSS     | x_tables                            | ipt_TCPMSS ip6t_TCPMSS
ipt_REJECT       | IP_NF_TARGET_REJECT            | nf_reject_ipv4 x_tables             | -
ip6t_REJECT      | IP6_NF_TARGET_REJECT           | nf_reject_ipv6 x_tables             | -
ip_set           | IP_SET                         | nfnetlink                           | -
ip_set_hash_ip   | IP_SET_HASH_IP                 | ip_set                              | ip_set_hash:ip
bridge           | BRIDGE                         | stp llc                             | -
stp              | STP                            | llc                                 | -
llc              | LLC                            | -                                   | -
br_netfilter     | BRIDGE_NETFILTER               | bridge                              | -
nfnetlink        | NETFILTER_NETLINK              | -                                   | net-pf-16-proto-12
nf_tables        | NF_TABLES                      | nfnetlink libcrc32c                 | nfnetlink-subsys-10
nft_compat       | NFT_COMPAT                     | nf_tables x_tables nfnetlink        | nfnetlink-subsys-11 nft-expr-match nft-expr-target
nft_chain_nat    | NFT_NAT                        | nf_nat nf_tables                    | nft-chain-2-nat nft-chain-10-nat nft-chain-1-nat
nft_nat          | NFT_NAT                        | nf_nat nf_tables                    | nft-expr-nat
nft_redir        | NFT_REDIR                      | nf_nat nf_tables                    | nft-expr-redir
nft_masq         | NFT_MASQ                       | nf_nat nf_tables                    | nft-expr-masq
nft_ct           | NFT_CT                         | nf_conntrack nf_tables              | nft-expr-ct nft-expr-notrack
nft_tproxy       | NFT_TPROXY                     | nf_tproxy_ipv6 nf_tproxy_ipv4 nf_defrag_ipv4 nf_defrag_ipv6 nf_tables | nft-expr-tproxy
nft_socket       | NFT_SOCKET                     | nf_socket_ipv4 nf_socket_ipv6 nf_tables | nft-expr-socket
nft_limit        | NFT_LIMIT                      | nf_tables                           | nft-expr-limit
nft_log          | NFT_LOG                        | nf_tables                           | nft-expr-log
nft_reject       | NFT_REJECT                     | nf_tables                           | -
nft_reject_inet  | NFT_REJECT_INET                | nf_reject_ipv4 nf_reject_ipv6 nft_reject nf_tables | nft-expr-1-reject
nft_fib          | NFT_FIB                        | nf_tables                           | -
nft_fib_ipv4     | NFT_FIB_IPV4                   | nft_fib nf_tables                   | nft-expr-2-fib
nft_fib_ipv6     | NFT_FIB_IPV6                   | nft_fib nf_tables                   | nft-expr-10-fib
nft_fib_inet     | NFT_FIB_INET                   | nft_fib_ipv4 nft_fib_ipv6 nft_fib nf_tables | nft-expr-1-fib
"""


def _parse(table: str) -> dict[str, ModuleInfo]:
    out: dict[str, ModuleInfo] = {}
    for raw in table.strip().splitlines():
        name, symbol, deps, aliases = (part.strip() for part in raw.split("|"))
        out[name] = ModuleInfo(
            name=name,
            symbol=symbol,
            deps=tuple(d for d in deps.split() if d != "-"),
            aliases=tuple(a for a in aliases.split() if a != "-"),
        )
    return out


@cache
def known_modules() -> dict[str, ModuleInfo]:
    return _parse(_TABLE)


def module_symbol(name: str) -> str | None:
    info = known_modules().get(name)
    return f"CONFIG_{info.symbol}" if info else None
