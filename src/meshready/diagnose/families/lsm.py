"""Linux security module records: SELinux AVC denials (audit log, dmesg) and AppArmor denials."""

from __future__ import annotations

import re

from meshready.diagnose.kinds import Kind, LineView, Signal

_AVC = re.compile(r"avc:\s+denied\s+\{\s*(?P<perms>[^}]*?)\s*\}", re.IGNORECASE)
_KV = re.compile(
    r"\b(?P<key>comm|kmod|scontext|tcontext|tclass|exe|permissive|operation|profile|name)="
    r'(?P<val>"[^"]*"|\S+)'
)
_APPARMOR = re.compile(r'apparmor="?DENIED"?', re.IGNORECASE)
_NETFILTER_PROCESS = re.compile(r"iptables|ip6tables|xtables|nft|istio|proxy-init|kuma|linkerd")

# In a line of ASCII text, every reading below needs one of these (signals.py skips lines with
# none of them).
TRIGGERS = ("avc:", "apparmor")

PHRASES = (
    re.compile(r"\{\s*module_request\s*\}", re.IGNORECASE),
    re.compile(r"kmod=\S+", re.IGNORECASE),
    re.compile(r'apparmor="?DENIED"?', re.IGNORECASE),
)


def extract(view: LineView) -> list[Signal]:
    low = view.low
    if "avc:" not in low and "apparmor" not in low:
        return []
    text = view.text
    fields = {k: v.strip('"') for k, v in _KV.findall(text)}
    m = _AVC.search(text)
    if m:
        perms = m.group("perms").split()
        permissive = fields.get("permissive") == "1"
        if "module_request" in perms and "kmod" in fields:
            return [
                view.signal(
                    Kind.AVC_MODULE,
                    name=fields["kmod"],
                    detail=fields.get("scontext", ""),
                    extra=(fields.get("comm", ""), "permissive" if permissive else "enforcing"),
                    warning=permissive,
                )
            ]
        comm = fields.get("comm", "") + fields.get("exe", "")
        tclass = fields.get("tclass", "")
        if _NETFILTER_PROCESS.search(comm) or "netfilter" in tclass:
            return [
                view.signal(
                    Kind.AVC_OTHER,
                    name=fields.get("comm"),
                    detail=f"{{ {' '.join(perms)} }} tclass={tclass}",
                    extra=(fields.get("scontext", ""),),
                    warning=permissive,
                )
            ]
        return []
    if _APPARMOR.search(text):
        comm = fields.get("comm", "")
        if _NETFILTER_PROCESS.search(comm) or "module" in fields.get("operation", ""):
            return [
                view.signal(
                    Kind.AVC_OTHER,
                    name=comm,
                    detail=f"AppArmor {fields.get('operation', '')} profile={fields.get('profile')}",
                )
            ]
    return []
