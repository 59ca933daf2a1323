# remora: one image, every role (`remora proxy|control|init|inject|injector`).
# Build stage: TypeScript → JavaScript, so the proxy does not pay for type stripping at run time
# (about 30 MB of RSS and start-up CPU per sidecar).
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# `remora init` (the init container) installs the interception rules: Debian's iptables package
# brings both backends (iptables-nft-* and iptables-legacy-*, and ip6tables-*). That container runs
# as root (runAsUser: 0) with the NET_ADMIN and NET_RAW capabilities; every other role keeps UID 2102.
RUN apt-get update && apt-get install -y --no-install-recommends iptables && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/remora
COPY package.json package-lock.json ./
# Runtime dependencies only; the `node` dev dependency is not needed: the base image is Node 24.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist

# The proxy runs as UID 2102; `remora init` exempts that UID from traffic redirection (and overrides
# the user: runAsUser: 0 on the init container).
RUN groupadd --system --gid 2102 remora && useradd --system --uid 2102 --gid 2102 --no-create-home remora
USER 2102:2102

# outbound, inbound, admin (see docs/DESIGN.md)
EXPOSE 15001 15006 15000 15012 15014
ENTRYPOINT ["node", "/opt/remora/dist/cli.js"]
CMD ["proxy"]
