# torpor with the process driver: postgres and mariadbd run inside the same container.
#
#   docker build .                     builds torpor from source (needs the rust image)
#   docker build --target prebuilt .   takes a torpor built outside: TORPOR_BIN in the context
#                                      (default target/release/torpor, after cargo build --release)
#
# The runtime stage comes first so that a --target prebuilt build never needs the rust image,
# even with the classic builder (which runs every stage before its target).

FROM debian:bookworm-slim AS runtime
# The servers torpor's process driver runs, unless the base has them already.
RUN if [ ! -x /usr/lib/postgresql/15/bin/postgres ] || [ ! -x /usr/sbin/mariadbd ]; then \
        apt-get update && apt-get install -y --no-install-recommends postgresql-15 mariadb-server ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY examples/compose.toml /etc/torpor/torpor.toml
WORKDIR /var/lib/torpor
EXPOSE 6432 3306 6480
ENTRYPOINT ["torpor", "up", "--config", "/etc/torpor/torpor.toml"]

FROM runtime AS prebuilt
ARG TORPOR_BIN=target/release/torpor
COPY ${TORPOR_BIN} /usr/local/bin/torpor

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin torpor

FROM runtime
COPY --from=build /src/target/release/torpor /usr/local/bin/torpor
