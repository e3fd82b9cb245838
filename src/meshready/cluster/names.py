"""Names meshready uses in a cluster: object names, label and annotation keys, the condition type.

One place for them, so that the agent (which writes them), install/uninstall (which removes them)
and the fleet view (which reads them) cannot drift apart. docs/agent.md lists them for users.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "meshready.io/"

# ---- what the agent publishes on its own Node
CONDITION_TYPE: Final = "MeshInterceptionReady"
LABEL_READY: Final = PREFIX + "ready"  # "true" | "false" | "unknown"
LABEL_BACKEND: Final = PREFIX + "backend"  # legacy | nft | nftables
ANNOTATION_REPORT: Final = PREFIX + "report"  # compact JSON (cluster.published.REPORT_SCHEMA)
DEFAULT_TAINT_KEY: Final = PREFIX + "not-ready"
DEFAULT_TAINT_EFFECT: Final = "NoSchedule"
TAINT_EFFECTS: Final = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# ---- objects that install creates
DEFAULT_NAMESPACE: Final = "meshready"
AGENT_NAME: Final = "meshready-agent"  # ServiceAccount, ClusterRole(Binding), DaemonSet
CONTAINER_NAME: Final = "agent"
FIELD_MANAGER: Final = "meshready"  # server-side apply by install
AGENT_FIELD_MANAGER: Final = "meshready-agent"  # the agent's patches on its Node
EVENT_COMPONENT: Final = "meshready-agent"
EVENTS_NAMESPACE: Final = "default"  # where node events go, as the kubelet's do
METRICS_PORT: Final = 9808
HOST_MOUNT: Final = "/host"  # the node's files in the agent's container

APP_LABELS: Final = {
    "app.kubernetes.io/name": AGENT_NAME,
    "app.kubernetes.io/part-of": "meshready",
    "app.kubernetes.io/managed-by": "meshready",
}
SELECTOR_LABELS: Final = {"app.kubernetes.io/name": AGENT_NAME}
# Namespaces that exist in every cluster: never rendered, created or deleted by meshready.
SYSTEM_NAMESPACES: Final = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})


def is_ours(key: str) -> bool:
    """A label, annotation or taint key meshready owns."""
    return key.startswith(PREFIX)
