"""What a command needs before it can assess: rules and backend, chosen from options."""

from __future__ import annotations

from dataclasses import dataclass

from meshready.errors import InputError
from meshready.knowledge.profiles import DEFAULT_PROFILE
from meshready.knowledge.requests import Backend, Need
from meshready.rules.derive import needs_for
from meshready.rules.load import get_profile, load_rules_file, profile_rulesets
from meshready.rules.model import NftRuleset, Ruleset


@dataclass(frozen=True)
class NeedsSpec:
    needs: list[Need]
    backend: Backend
    profile: str | None
    rules: tuple[str, ...]
    rulesets: tuple[Ruleset, ...]


def needs_from_options(
    profile: str | None, rules: tuple[str, ...], backend: str | None
) -> NeedsSpec:
    """Rules from ``--rules`` files, else from ``--profile`` (default: the Istio sidecar)."""
    chosen_backend = Backend(backend) if backend else None
    if rules and profile:
        raise InputError("--profile", "give either --profile or --rules, not both")
    if rules:
        rulesets = [load_rules_file(spec) for spec in rules]
        if chosen_backend is None:
            only_nft = all(isinstance(r, NftRuleset) for r in rulesets)
            chosen_backend = Backend.NFTABLES if only_nft else Backend.LEGACY
        return NeedsSpec(
            needs_for(rulesets, chosen_backend),
            chosen_backend,
            None,
            tuple(r.source for r in rulesets),
            tuple(rulesets),
        )
    prof = get_profile(profile or DEFAULT_PROFILE)
    chosen_backend = chosen_backend or prof.default_backend
    if chosen_backend not in prof.backends:
        raise InputError(
            "--backend",
            f"profile {prof.name} runs on {', '.join(b.value for b in prof.backends)}, "
            f"not {chosen_backend.value}",
        )
    rulesets = profile_rulesets(prof)
    return NeedsSpec(
        needs_for(rulesets, chosen_backend),
        chosen_backend,
        prof.name,
        tuple(r.source for r in rulesets),
        tuple(rulesets),
    )
