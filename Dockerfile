# remora: one image, every role (`remora proxy|control|init|inject|injector|demo`).
# Node 24 runs the TypeScript sources directly (type stripping), so there is no build stage.
FROM node:24-bookworm-slim

ENV NODE_ENV=production
WORKDIR /opt/remora

COPY package.json package-lock.json ./
# Runtime dependencies only; the `node` dev dependency is not needed: the base image is Node 24.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY bin ./bin
COPY src ./src
COPY deploy/local ./deploy/local

# The proxy runs as UID 2102; `remora init` exempts that UID from traffic redirection.
RUN groupadd --system --gid 2102 remora && useradd --system --uid 2102 --gid 2102 --no-create-home remora
USER 2102:2102

# outbound, inbound, admin (see docs/DESIGN.md)
EXPOSE 15001 15006 15000
ENTRYPOINT ["node", "/opt/remora/src/cli.ts"]
CMD ["proxy"]
