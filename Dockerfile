# syntax=docker/dockerfile:1
# The meshready node agent (docs/agent.md). Multi-arch, from any build machine:
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     -t ghcr.io/meshready/meshready:0.1.0 --push .
#
# The wheel is pure Python, so it is built once on the build platform; the runtime stage installs
# it with its dependencies (msgspec has wheels for both architectures) on each target platform.
# kmod gives `modprobe` and `lsmod` for debugging in the pod; the DaemonSet runs the agent with
# `--loader python` (finit_module with CAP_SYS_MODULE on the host's module files: no host binaries,
# no chroot). iptables (legacy and nft binaries) and nftables are what the in-place probe applies the
# mesh's rules with.

ARG PYTHON_VERSION=3.11

FROM --platform=$BUILDPLATFORM python:${PYTHON_VERSION}-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="meshready" \
      org.opencontainers.image.description="Kernel module readiness for service-mesh traffic interception: the node agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends kmod iptables nftables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --find-links /wheels "meshready[cluster]" \
 && rm -rf /wheels \
 && python -m compileall -q "$(python -c 'import meshready, os; print(os.path.dirname(meshready.__file__))')"
# The root filesystem is read-only in the DaemonSet: no bytecode writes, logs unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Root, for CAP_SYS_MODULE and NET_ADMIN (granted by the DaemonSet, everything else dropped).
USER 0:0
ENTRYPOINT ["meshready", "agent"]
