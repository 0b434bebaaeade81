# highlander: multi-stage build on Debian bookworm.
#   docker build -t highlander:0.1.0 .
# The build stage compiles with the project's Makefile (llhttp from Debian's
# node-llhttp, like everywhere else); the runtime stage holds the binary
# and only the shared libraries it links, and runs as a non-root user.
# No Docker engine runs where this project is developed and tested, so this
# file is checked by reading and by the test that runs the binary exactly as
# the Deployment would (test/system/test_deployment.py), not by a build.

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config git ca-certificates node-llhttp \
      libuv1-dev libhiredis-dev libcurl4-openssl-dev libcyaml-dev libyaml-dev libjansson-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include/ include/
COPY src/ src/
COPY scripts/embed-assets.sh scripts/
RUN make -j"$(nproc)" build/highlander && strip build/highlander

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libhiredis0.14 libcurl4 libcyaml1 libyaml-0-2 libjansson4 libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 highlander \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin highlander \
 && mkdir -p /etc/k8-highlander
COPY --from=build /src/build/highlander /usr/local/bin/highlander
# The config is mounted here (a ConfigMap); flags and HIGHLANDER_* override it.
VOLUME ["/etc/k8-highlander"]
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/highlander"]
CMD ["--config", "/etc/k8-highlander/config.yaml"]
