"""What a command needs before it can assess: rules and backend, chosen from options."""

from __future__ import annotations

from dataclasses import dataclass

from meshready.assess.report import IptablesAssumption
from meshready.errors import InputError
from meshready.knowledge.iptables_versions import DEFAULT_VERSION, measured_as, parse_version
from meshready.knowledge.profiles import DEFAULT_PROFILE, Profile
from meshready.knowledge.requests import Backend, Need
from meshready.rules.derive import needs_for
from meshready.rules.load import get_profile, load_rules_file, profile_rulesets
from meshready.rules.model import NftRuleset, Ruleset, XtRuleset


@dataclass(frozen=True)
class NeedsSpec:
    needs: list[Need]
    backend: Backend
    profile: str | None
    rules: tuple[str, ...]
    rulesets: tuple[Ruleset, ...]
    iptables: IptablesAssumption | None = None  # None when no iptables rules are involved


def iptables_assumption(
    given: str | None, profile: Profile | None, rulesets: list[Ruleset]
) -> IptablesAssumption | None:
    """The iptables userspace version the rules are assumed to be applied with."""
    if given is not None:
        try:
            version = str(parse_version(given))
        except ValueError as exc:
            raise InputError("--iptables-version", str(exc)) from exc
        source = "--iptables-version"
    elif profile is not None and profile.iptables_version is not None:
        version = profile.iptables_version
        source = f"profile {profile.name}: {profile.iptables_source}"
    else:
        version = DEFAULT_VERSION
        source = (
            "default (Debian bookworm's iptables); give --iptables-version for the mesh image's"
        )
    if not any(isinstance(r, XtRuleset) for r in rulesets):
        return None
    return IptablesAssumption(version, source, measured_as(version))


def needs_from_options(
    profile: str | None,
    rules: tuple[str, ...],
    backend: Backend | None,
    iptables_version: str | None = None,
) -> NeedsSpec:
    """Rules from ``--rules`` files, else from ``--profile`` (default: the Istio sidecar).
    ``backend`` overrides the default one;
    ``iptables_version`` overrides the profile's (the mesh image's) iptables version."""
    chosen_backend = backend
    if rules and profile:
        raise InputError("--profile", "give either --profile or --rules, not both")
    if rules:
        rulesets = [load_rules_file(spec) for spec in rules]
        if chosen_backend is None:
            only_nft = all(isinstance(r, NftRuleset) for r in rulesets)
            chosen_backend = Backend.NFTABLES if only_nft else Backend.LEGACY
        assumed = iptables_assumption(iptables_version, None, rulesets)
        return NeedsSpec(
            needs_for(rulesets, chosen_backend, assumed.version if assumed else DEFAULT_VERSION),
            chosen_backend,
            None,
            tuple(r.source for r in rulesets),
            tuple(rulesets),
            assumed,
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
    assumed = iptables_assumption(iptables_version, prof, rulesets)
    return NeedsSpec(
        needs_for(rulesets, chosen_backend, assumed.version if assumed else DEFAULT_VERSION),
        chosen_backend,
        prof.name,
        tuple(r.source for r in rulesets),
        tuple(rulesets),
        assumed,
    )
