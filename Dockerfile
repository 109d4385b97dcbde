# credrot in a container: a multi-stage build, a small final image without a shell or a
# package manager, running as a non-root user.
#
#   docker build -t credrot .
#   docker run --rm -v "$PWD/services.toml:/etc/credrot/services.toml:ro" \
#       -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY credrot list
#
# tests/e2e/container.rs checks this file's shape (stages, --locked, non-root, exec-form
# entrypoint) and that .dockerignore keeps keys and build output out of the build context.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && install -m 0755 target/release/credrot /usr/local/bin/credrot

# glibc and the CA certificates the SDK's TLS needs, nothing else; uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/credrot /usr/local/bin/credrot
ENV CREDROT_CONFIG=/etc/credrot/services.toml \
    CREDROT_STATE_DIR=/tmp/credrot-state
USER nonroot
ENTRYPOINT ["/usr/local/bin/credrot"]
CMD ["--help"]
