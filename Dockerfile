# syntax=docker/dockerfile:1
# relay-operator container image.
#   docker build -t relay-operator:0.1.0 .
# Build stage: release binary from the locked dependency set.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
# The allocator's build-time settings ([env]).
COPY .cargo ./.cargo
COPY src ./src
# Declared in Cargo.toml ([[bench]]): cargo refuses a manifest whose targets are missing.
COPY benches ./benches
RUN cargo build --release --locked --bin relay-operator \
 && install -D -m 0755 target/release/relay-operator /out/relay-operator

# Runtime stage: distroless with glibc/libgcc (the binary uses rustls, no OpenSSL).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="relay-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/relay-operator /usr/local/bin/relay-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/relay-operator"]
CMD ["run"]
