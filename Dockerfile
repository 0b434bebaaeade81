# highlander: multi-stage build on Debian bookworm.
#   make image     (podman, daemonless; scripts/image.sh, docs/deployment.md)
#   docker build --build-arg GIT_REV=$(git rev-parse --short HEAD) -t highlander:0.1.0 .
# The build stage compiles with the project's Makefile (llhttp from Debian's
# node-llhttp, like everywhere else) and gathers the runtime root file
# system: the stripped binary, the shared libraries the loader maps for it
# (scripts/image-rootfs.sh), CA certificates and the user 65532.  The
# runtime image is that tree alone (FROM scratch): no shell, no package
# manager, no compiler; the probes are HTTP GETs, which need none.
# test/system/test_image.py builds it and runs it as the chart does.

FROM debian:bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config ca-certificates node-llhttp \
      libuv1-dev libhiredis-dev libcurl4-openssl-dev libcyaml-dev libyaml-dev libjansson-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include/ include/
COPY src/ src/
COPY scripts/embed-assets.sh scripts/image-rootfs.sh scripts/
# The revision --version names (there is no .git in the build context).
ARG GIT_REV=unknown
RUN make -j"$(nproc)" GIT_REV="$GIT_REV" build/highlander \
 && install -D -s build/highlander /usr/local/bin/highlander \
 && sh scripts/image-rootfs.sh /usr/local/bin/highlander /rootfs \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/etc/k8-highlander /rootfs/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nhighlander:x:65532:65532:highlander:/nonexistent:/usr/sbin/nologin\n' \
      >/rootfs/etc/passwd \
 && printf 'root:x:0:\nhighlander:x:65532:\n' >/rootfs/etc/group \
 && printf 'passwd: files\ngroup: files\nhosts: files dns\n' >/rootfs/etc/nsswitch.conf \
 && chmod 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs/ /
# The config is mounted here (a ConfigMap); flags and HIGHLANDER_* override it.
VOLUME ["/etc/k8-highlander"]
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/highlander"]
CMD ["--config", "/etc/k8-highlander/config.yaml"]
