"""Connecting to a cluster the way kubectl does: --kubeconfig, $KUBECONFIG, ~/.kube/config, in-cluster.

As a kubectl plugin, meshready gets no global flags from kubectl, so commands take ``--kubeconfig``,
``--context`` and ``-n/--namespace`` themselves and resolve them here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import Client, ConfigError, KubeConfig
from lightkube.config.kubeconfig import SingleConfig

from meshready.boundedio import MiB, read_text
from meshready.cluster.errors import ClusterError
from meshready.cluster.guard import guard_client
from meshready.errors import InputError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_KUBECONFIG = Path("~/.kube/config")
KUBECONFIG_CAP = 16 * MiB  # kubeconfigs with hundreds of clusters stay far below


@dataclass(frozen=True)
class Connection:
    """A resolved configuration: which file and context (or in-cluster), and the namespace."""

    config: SingleConfig
    source: str  # the kubeconfig path, or "in-cluster"
    namespace: str  # the context's namespace (default "default")

    @property
    def server(self) -> str:
        return str(self.config.cluster.server)

    @property
    def context(self) -> str:
        return str(self.config.context_name)


def _kubeconfig_files(explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit.expanduser()]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    default = DEFAULT_KUBECONFIG.expanduser()
    return [default] if default.is_file() else []


def _merge(files: list[Path]) -> tuple[dict[str, Any], Path]:
    """kubectl's merge of $KUBECONFIG files: the first file to name an entry wins."""
    merged: dict[str, Any] = {"clusters": [], "contexts": [], "users": []}
    first: Path | None = None
    for path in files:
        try:
            doc = yaml.safe_load(read_text(path, cap=KUBECONFIG_CAP)) or {}
        except InputError as exc:
            raise ClusterError(f"{path}: cannot read kubeconfig ({exc.message})") from exc
        except yaml.YAMLError as exc:
            raise ClusterError(f"{path}: not a kubeconfig ({exc})") from exc
        except RecursionError as exc:
            raise ClusterError(f"{path}: not a kubeconfig (nested too deeply)") from exc
        if not isinstance(doc, dict):
            raise ClusterError(f"{path}: not a kubeconfig")
        first = first or path
        for key in ("clusters", "contexts", "users"):
            seen = {entry.get("name") for entry in merged[key]}
            merged[key].extend(
                e for e in doc.get(key) or [] if isinstance(e, dict) and e.get("name") not in seen
            )
        if not merged.get("current-context") and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
    assert first is not None
    return merged, first


def in_cluster_available(service_account: Path = SERVICE_ACCOUNT_DIR) -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (service_account / "token").is_file()


def resolve(
    kubeconfig: Path | None = None,
    context: str | None = None,
    *,
    service_account: Path = SERVICE_ACCOUNT_DIR,
) -> Connection:
    """The configuration kubectl would use; raise ClusterError when there is none."""
    files = _kubeconfig_files(kubeconfig)
    try:
        if files:
            missing = [p for p in files if not p.is_file()]
            if kubeconfig is not None and missing:
                raise ClusterError(f"{kubeconfig}: kubeconfig not found")
            present = [p for p in files if p.is_file()]
            if not present:
                raise ClusterError(f"no kubeconfig at {', '.join(map(str, files))}")
            doc, first = _merge(present)
            config = KubeConfig.from_dict(doc, fname=first).get(context_name=context)
            source = str(first)
        elif in_cluster_available(service_account):
            config = KubeConfig.from_service_account(service_account).get(context_name=context)
            source = "in-cluster"
        else:
            raise ClusterError(
                "no cluster configuration: give --kubeconfig, set KUBECONFIG, create "
                "~/.kube/config, or run in a pod with a ServiceAccount token"
            )
    except ConfigError as exc:
        raise ClusterError(f"kubeconfig: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ClusterError(f"kubeconfig: malformed ({exc})") from exc
    if config is None:
        raise ClusterError("kubeconfig: no context")
    return Connection(config=config, source=source, namespace=config.namespace or "default")


def make_client(
    connection: Connection,
    *,
    namespace: str | None = None,
    field_manager: str | None = None,
    timeout: float | None = 10.0,
) -> Client:
    """A lightkube Client for CONNECTION. Proxy variables in the environment are not used.
    TIMEOUT: seconds per request (connect, read, write), None for no limit (watches)."""
    try:
        client = Client(
            config=connection.config,
            namespace=namespace or connection.namespace,
            field_manager=field_manager,
            timeout=httpx2.Timeout(timeout),
            trust_env=False,
        )
        return guard_client(client)  # exec plugin, watch and error bounds (cluster.guard)
    except ConfigError as exc:
        raise ClusterError(f"kubeconfig: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ClusterError(f"kubeconfig {connection.source}: {exc}") from exc
