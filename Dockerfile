# remora: one image, every role (`remora proxy|control|init|inject`); docs/image.md.
#
# Build stage: the lock file's packages, then `scripts/bundle.ts --layer /out` bundles src/ with
# esbuild into /out: package.json, dist/ (every role, split so that a sidecar loads only the
# proxy's code: neither the control plane's @kubernetes/client-node nor the tracing SDK until
# tracing is on) and node_modules/ with the two packages that stay external: koffi (native; npm
# installed its prebuilt binary for this platform, the image's) and undici. The bundle refuses
# a package that only dev dependencies need, and anything it would load at run time that /out
# does not hold.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/bundle.ts ./scripts/
COPY src ./src
RUN node scripts/bundle.ts --layer /out

# The k8s/demo apps (web, greeter, worker: deploy/local/apps), not part of the mesh image:
#   docker build --target demo -t ghcr.io/remora-mesh/remora-demo:0.1.0 .
# They run from their TypeScript sources (Node 24 strips the types) with the lock file's packages
# (@grpc/grpc-js, @grpc/proto-loader, amqplib are dev dependencies of remora itself).
FROM node:24-bookworm-slim AS demo
WORKDIR /opt/remora
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY deploy/local/apps ./deploy/local/apps
USER 2102:2102
ENTRYPOINT ["node"]
CMD ["/opt/remora/deploy/local/apps/web.ts"]

FROM node:24-bookworm-slim
LABEL org.opencontainers.image.title="remora" \
      org.opencontainers.image.description="A service-mesh sidecar proxy in TypeScript: proxy, control plane, init and inject in one image" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
# `remora init` (the init container) installs the interception rules: Debian's iptables package
# brings both backends (iptables-nft-* and iptables-legacy-*, and ip6tables-*). That container runs
# as root (runAsUser: 0) with the NET_ADMIN and NET_RAW capabilities; every other role keeps UID
# 2102. No role runs npm, yarn or corepack: they are deleted (this does not shrink the base's
# layers, but leaves nothing of theirs to run or to be reported by an image scanner).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/* \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
           /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
           /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && groupadd --system --gid 2102 remora \
 && useradd --system --uid 2102 --gid 2102 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin remora
# The runtime layer, owned by root: UID 2102 reads it and cannot change it.
COPY --from=build /out /opt/remora

# The proxy runs as UID 2102; `remora init` exempts that UID from traffic redirection (and overrides
# the user: runAsUser: 0 on the init container).
USER 2102:2102

# outbound, inbound, admin; the control plane's discovery, admin and admission webhook (see docs/DESIGN.md)
EXPOSE 15001 15006 15000 15012 15014 15017
# --max-semi-space-size=8, --expose-gc: IMAGE_NODE_FLAGS in scripts/bundle.ts says why (a capped young
# generation; memory given back when the sidecar is quiet).
ENTRYPOINT ["node", "--max-semi-space-size=8", "--expose-gc", "/opt/remora/dist/cli.js"]
CMD ["proxy"]
