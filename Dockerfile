# peerchat relay image: the relay binary (with the web client built in), running as non-root.
# The build runs the same steps as `cargo xtask web` and a release build of the relay.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# `cargo xtask web` installs the wasm32 target and the wasm-bindgen CLI at the version in
# Cargo.lock, builds the WASM client and writes the bundle to web/pkg.
RUN cargo xtask web \
 && cargo build --release --locked --package peerchat-server --bin peerchat-server \
 && mkdir -p /out \
 && cp target/release/peerchat-server /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/peerchat-server /usr/local/bin/peerchat-server
# Set PEERCHAT_SIGNING_KEY as a secret in production; without it a key file is created in the
# container, which is lost with the container.
ENV PEERCHAT_LISTEN=0.0.0.0:8080 \
    PEERCHAT_KEY_FILE=/home/nonroot/peerchat/relay.key
EXPOSE 8080
USER nonroot
ENTRYPOINT ["/usr/local/bin/peerchat-server"]
