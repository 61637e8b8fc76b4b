# torpor with the process driver: postgres and mariadbd run inside the same container.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin torpor

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 mariadb-server ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/torpor /usr/local/bin/torpor
COPY examples/compose.toml /etc/torpor/torpor.toml
WORKDIR /var/lib/torpor
EXPOSE 6432 3306 6480
ENTRYPOINT ["torpor", "up", "--config", "/etc/torpor/torpor.toml"]
