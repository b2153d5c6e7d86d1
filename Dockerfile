# Trellis leader image: a static (musl) `trellis` binary and the web app on an empty base.
#
#   docker build -t trellis .
#   docker run -p 8080:8080 -p 1883:1883 -v trellis-data:/data trellis
#
# The build stage needs the network (base image, crates, wasm-bindgen-cli). The runtime stage
# needs nothing: tests/tests/docker.rs builds it on a machine with no registry from the same
# binary and web app, built by scripts/test.sh.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools binutils brotli \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl" wasm32-unknown-unknown \
 && cargo install wasm-bindgen-cli --version 0.2.130
WORKDIR /src
COPY . .
RUN target="$(uname -m)-unknown-linux-musl" \
 && cargo build --locked --release --target "$target" -p trellis-server \
 && mkdir -p /out/web /out/data \
 && cp "target/$target/release/trellis" /out/trellis \
 && strip /out/trellis \
 && CARGO_TARGET_DIR=/src/target bash scripts/build-web.sh /out/web

FROM scratch AS leader
COPY --from=build /out/ /
# Inside a container the listeners must face the container's network; the data lives in a volume.
ENV TRELLIS_DATA_DIR=/data \
    TRELLIS_HTTP_LISTEN=0.0.0.0:8080 \
    TRELLIS_MQTT_LISTEN=0.0.0.0:1883 \
    TRELLIS_WEB_DIR=/web
VOLUME ["/data"]
EXPOSE 8080 1883
ENTRYPOINT ["/trellis"]
