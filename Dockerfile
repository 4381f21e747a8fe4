# syntax=docker/dockerfile:1
# peerchat relay image: the relay binary with the web client built in.
#
# Layers from the least to the most often changed, so that a change to peerchat's code rebuilds
# only peerchat's own crates: the relay's dependencies (cooked by cargo-chef from the manifests
# alone), then the wasm toolchain (xtask's own setup, at the versions Cargo.lock pins), then the
# build. Every `cargo xtask` command below is run, as written here, by a test
# (server/tests/first_run.rs), so the recipe is exercised even where no Docker engine is.

FROM rust:1-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --package peerchat-server --bin peerchat-server
# xtask needs the real workspace manifest; the members stay cargo-chef's skeleton until COPY . .
COPY Cargo.toml ./
COPY .cargo .cargo
COPY xtask xtask
RUN cargo xtask setup --build-only
COPY . .
RUN cargo xtask dist

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin peerchat
COPY --from=build /src/target/release/peerchat-server /usr/local/bin/peerchat-server
COPY server/container-entrypoint.sh /usr/local/bin/peerchat-entrypoint
# Everything the relay writes goes to /data: its key (unless PEERCHAT_SIGNING_KEY is set) and
# the in-process virtual clients' keys and caches. Mount a volume there to keep them.
ENV PEERCHAT_LISTEN=0.0.0.0:8080 \
    PEERCHAT_KEY_FILE=/data/relay.key \
    PEERCHAT_VIRTUAL_CLIENT_DIR=/data/virtual
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/peerchat-entrypoint"]
