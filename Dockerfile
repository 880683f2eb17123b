# One image for both services: `mfa server`, `mfa notifier`, or `mfa serve` for both.
# Build: docker build -t mfa .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a code change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY bench ./bench
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
# ca-certificates: reqwest verifies Telegram's certificate against the system store.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/mfa --create-home mfa \
    && install -d -o mfa -g mfa -m 0700 /var/lib/mfa/data
COPY --from=build /src/target/release/mfa /usr/local/bin/mfa
USER mfa
WORKDIR /var/lib/mfa
# The data directory (database, generated key) belongs on a volume; it exists here with its
# owner so that a new named volume takes them. Core dumps: the server sets RLIMIT_CORE to 0
# and marks itself not dumpable at start, whatever the container's ulimit says.
VOLUME /var/lib/mfa/data
ENV MFA_DATA_DIR=/var/lib/mfa/data \
    MFA_BIND=0.0.0.0:6000 \
    LOG_FORMAT=json
EXPOSE 6000 6001
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 CMD ["mfa", "healthcheck"]
ENTRYPOINT ["mfa"]
CMD ["server"]
