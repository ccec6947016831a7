# syntax=docker/dockerfile:1
# prometheus-multi-tenant-proxy: a static-ish release build on Debian bookworm, run on
# distroless (glibc, no shell, no package manager) as nobody (65534). The image works with a
# read-only root filesystem: the proxy only reads its config and writes nothing to disk.
#
#   docker build -t ghcr.io/ethos/prometheus-multi-tenant-proxy:0.1.0 .

FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole workspace is needed to resolve Cargo.lock (members: proxy, xtask, e2e);
# .dockerignore keeps target/ and .git out of the context.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p proxy --bin prometheus-multi-tenant-proxy \
 && install -D -m 0755 target/release/prometheus-multi-tenant-proxy /out/prometheus-multi-tenant-proxy

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="prometheus-multi-tenant-proxy" \
      org.opencontainers.image.description="Multi-tenant gateway for Prometheus: read gateway, collector, ingest gateway" \
      org.opencontainers.image.source="https://github.com/ethos/prometheus-multi-tenant-proxy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/prometheus-multi-tenant-proxy /usr/local/bin/prometheus-multi-tenant-proxy
COPY kustomize/base/config/config.yaml /etc/prometheus-multi-tenant-proxy/config.yaml
ENV PMTP_CONFIG=/etc/prometheus-multi-tenant-proxy/config.yaml
USER 65534:65534
# 8080: tenant API (/api/v1/..., POST /api/v1/write); 9091: admin (/metrics, /health, /ready).
EXPOSE 8080 9091
ENTRYPOINT ["/usr/local/bin/prometheus-multi-tenant-proxy"]
CMD ["--config", "/etc/prometheus-multi-tenant-proxy/config.yaml"]
