# tether's container image. From the repository root, with Docker or Podman:
#
#   docker build -t tether:0.1.0 .
#   docker build -t tether:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg SOURCE=https://example.com/your/tether.git .
#
# The builder compiles `tether` on Debian 12 (bookworm) with the workspace's
# rust-version; the final stage is distroless cc-debian12, which has what the binary
# needs at run time and nothing else: the glibc it was linked against (2.36),
# libgcc_s, the CA certificates the AWS SDK trusts (/etc/ssl/certs/ca-certificates.crt)
# and the user nonroot (65532). tether writes nothing to disk, so the image runs with
# a read-only root filesystem.
#
# `make image` builds the same image on a machine without a Docker daemon or access
# to base images (scripts/build-image.sh), and checks RUST_VERSION and VERSION below
# against Cargo.toml.

ARG RUST_VERSION=1.94.1

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# 1. The dependencies, from the manifests and the lock file with stub sources: this
#    layer is built again when a manifest or Cargo.lock changes, not when tether's
#    own code does. (The tests are not part of the image: .dockerignore leaves out
#    tests/ but for the test kit's manifest, and the stubs stand in for the rest.)
COPY Cargo.toml Cargo.lock ./
COPY providers/api/Cargo.toml providers/api/
COPY providers/aws/Cargo.toml providers/aws/
COPY tests/testkit/Cargo.toml tests/testkit/
RUN mkdir -p src providers/api/src providers/aws/src tests/testkit/src tests/integration \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs providers/api/src/lib.rs providers/aws/src/lib.rs \
          tests/testkit/src/lib.rs tests/integration/main.rs \
 && cargo build --release --locked -p tether

# 2. tether itself. COPY keeps the files' times, which may be older than the stubs'
#    build: touching the crate roots makes cargo compile the real sources. The symbol
#    table is stripped (19 MB instead of 25 MB; a backtrace shows addresses only).
COPY . .
RUN touch src/main.rs src/lib.rs providers/api/src/lib.rs providers/aws/src/lib.rs \
 && cargo build --release --locked -p tether \
 && strip --strip-all -o /tether target/release/tether

FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=
ARG SOURCE=
LABEL org.opencontainers.image.title="tether" \
      org.opencontainers.image.description="Keeps AWS databases and instances in the state Kubernetes custom resources declare" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /tether /tether
USER 65532:65532
# /healthz and /readyz; `run` listens on all addresses so the kubelet's probes reach it.
EXPOSE 8080
ENTRYPOINT ["/tether"]
CMD ["run", "--admin-addr=0.0.0.0:8080"]
