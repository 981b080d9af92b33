# lakecube: build in a full Rust image, run in a small Debian one as a non-root user.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names these targets; cargo checks that their files exist even for a --bin build.
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin lakecube && strip target/release/lakecube

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin lakecube \
 && mkdir -p /data /cube-defs \
 && chown lakecube /data
COPY --from=build /src/target/release/lakecube /usr/local/bin/lakecube
COPY cube-defs /cube-defs
USER lakecube
WORKDIR /data
# The demo lake is generated on the first start into the (empty) volume; a lake given by
# LAKECUBE_LAKE elsewhere must exist. --ingest-watch reports go to the writable volume.
ENV LAKECUBE_LAKE=/data/demo \
    LAKECUBE_DEMO_IF_EMPTY=true \
    LAKECUBE_INGEST_REPORTS=/data/ingest-reports \
    LAKECUBE_CUBE_DEFS=/cube-defs \
    LAKECUBE_LISTEN=0.0.0.0:5432
VOLUME ["/data", "/cube-defs"]
EXPOSE 5432
ENTRYPOINT ["lakecube"]
CMD ["serve"]
