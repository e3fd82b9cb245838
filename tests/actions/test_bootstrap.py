from __future__ import annotations

import subprocess
import tomllib

import pytest
import yaml

from meshready.actions.bootstrap import (
    OKE_DEFAULT_INIT,
    PROVIDERS,
    RENDERERS,
    BootstrapProvider,
    Source,
    render_bootstrap,
)
from meshready.actions.persist import PERSIST_PATH, render_persist
from meshready.cli.main import main
from meshready.errors import ActionError
from meshready.knowledge.requests import Backend
from tests.actions.fakehost import persisted_modules

MODULES = ["x_tables", "ip_tables", "nf_nat", "iptable_nat", "xt_REDIRECT", "xt_owner"]
SOURCE = Source(profile="istio-sidecar", backend=Backend.LEGACY, kernel="6.1.0-56-cloud-amd64")
CONF = render_persist(MODULES, profile="istio-sidecar", backend=Backend.LEGACY)


def test_modules_load_is_what_fix_writes() -> None:
    assert render_bootstrap(BootstrapProvider.MODULES_LOAD, MODULES, SOURCE) == CONF


def test_cloud_init() -> None:
    text = render_bootstrap(BootstrapProvider.CLOUD_INIT, MODULES, SOURCE)
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    (entry,) = data["write_files"]
    assert entry["path"] == PERSIST_PATH and entry["content"] == CONF
    assert data["runcmd"] == [["modprobe", "-a", "-b", *MODULES]]


def test_oke_wraps_oracles_default_script() -> None:
    text = render_bootstrap(BootstrapProvider.OKE, MODULES, SOURCE)
    assert text.startswith("#!/bin/bash\n")
    assert text.rstrip().endswith(OKE_DEFAULT_INIT)  # Oracle's lines stay, last
    assert text.index("modprobe -a -b") < text.index("oke_init_script")
    assert CONF in text
    assert "errexit" not in text  # a failing modprobe must not stop the node from joining
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def test_oke_script_writes_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = render_bootstrap(BootstrapProvider.OKE, MODULES, SOURCE)
    body = text.split("# Oracle's default")[0]
    body = body.replace("/etc/modules-load.d", str(tmp_path / "etc/modules-load.d"))
    body = body.replace("modprobe -a -b", "true")
    subprocess.run(["bash", "-c", body], check=True)
    assert (tmp_path / "etc/modules-load.d/meshready.conf").read_text() == CONF


def test_talos_patch() -> None:
    data = yaml.safe_load(render_bootstrap(BootstrapProvider.TALOS, MODULES, SOURCE))
    assert data == {"machine": {"kernel": {"modules": [{"name": m} for m in MODULES]}}}


def test_bottlerocket_settings() -> None:
    data = tomllib.loads(render_bootstrap(BootstrapProvider.BOTTLEROCKET, MODULES, SOURCE))
    modules = data["settings"]["kernel"]["modules"]
    assert list(modules) == MODULES
    assert all(v == {"allowed": True, "autoload": True} for v in modules.values())


@pytest.mark.parametrize("provider", list(BootstrapProvider))
def test_headers_name_the_source(provider: BootstrapProvider) -> None:
    text = render_bootstrap(provider, MODULES, SOURCE)
    assert "meshready" in text and "istio-sidecar" in text
    # modules-load is byte for byte what `meshready fix` writes, which names no kernel
    assert ("6.1.0-56-cloud-amd64" in text) is (provider != "modules-load")


def test_providers_are_the_enum_in_cli_order() -> None:
    assert PROVIDERS == ("oke", "cloud-init", "modules-load", "talos", "bottlerocket")
    assert set(RENDERERS) == set(BootstrapProvider)  # every provider has a renderer


@pytest.mark.parametrize("provider", list(BootstrapProvider))
def test_names_are_checked(provider: BootstrapProvider) -> None:
    with pytest.raises(ActionError):
        render_bootstrap(provider, ["ip_tables", "x; rm -rf /"], SOURCE)


def test_cli_bootstrap_for_a_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", "bootstrap", "--provider", "modules-load",
                 "--modules-dir", "tests/data/kernels/6.12.117+deb12-cloud-amd64"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    mods = persisted_modules(out)
    assert mods[:2] == ["x_tables", "ip_tables"] and "xt_owner" in mods


def test_cli_bootstrap_generic_and_nftables(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["render", "bootstrap", "--provider", "talos", "--profile", "istio-sidecar-nftables"])
        == 0
    )
    data = yaml.safe_load(capsys.readouterr().out)
    names = [m["name"] for m in data["machine"]["kernel"]["modules"]]
    assert "nf_tables" in names and "nft_redir" in names and "ip_tables" not in names


def test_cli_bootstrap_bad_provider(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "bootstrap", "--provider", "gke"]) == 2
