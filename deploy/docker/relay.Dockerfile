# Relay node image. Build from the repository root:
#   docker build -f deploy/docker/relay.Dockerfile -t hie-relay .
# Run with the config and certificates mounted read-only:
#   docker run -p 8443:8443 -v /etc/hie-relay:/etc/hie-relay:ro hie-relay
# The admin listener defaults to 127.0.0.1 inside the container; publish it only
# on a private network (-e HIE_RELAY_ADMIN_HOST=0.0.0.0 -p 127.0.0.1:9090:9090).

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY certs ./certs
COPY common ./common
COPY relay ./relay
COPY ledger ./ledger
COPY hospital-agent ./hospital-agent
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
# Two glibc malloc arenas (docs/performance.md, "Settings that trade memory for speed"; the load bench's default).
ENV MALLOC_ARENA_MAX=2
WORKDIR /opt/hie
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/bin ./bin
COPY --from=build /src/dist ./dist
# The relay writes nothing to disk; run it as the unprivileged node user.
USER node
EXPOSE 8443
ENTRYPOINT ["node", "--single-threaded-gc", "/opt/hie/bin/hie-relay.js"]
CMD ["--config", "/etc/hie-relay/relay.yaml"]
