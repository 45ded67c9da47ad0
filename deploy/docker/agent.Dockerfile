# Hospital agent image. Build from the repository root:
#   docker build -f deploy/docker/agent.Dockerfile -t hie-agent .
# Run with the config and certificates mounted read-only, a persistent data
# volume, and the secrets from an env file (HIE_AGENT_API_TOKENS,
# HIE_AGENT_PATIENT_SECRET):
#   docker run -p 127.0.0.1:8480:8480 -v /etc/hie-agent:/etc/hie-agent:ro \
#     -v hie-agent-data:/var/lib/hie-agent --env-file /etc/hie-agent/env hie-agent
# Set api.host to 0.0.0.0 in agent.yaml (or HIE_AGENT_API_HOST=0.0.0.0) so the
# published port reaches the API, and publish it only to the EHR's network.

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
ENV NODE_ENV=production HIE_AGENT_DATA_DIR=/var/lib/hie-agent
WORKDIR /opt/hie
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/bin ./bin
COPY --from=build /src/dist ./dist
RUN mkdir -p /var/lib/hie-agent && chown node:node /var/lib/hie-agent && chmod 0700 /var/lib/hie-agent
USER node
VOLUME ["/var/lib/hie-agent"]
EXPOSE 8480
ENTRYPOINT ["node", "--single-threaded-gc", "--initial-old-space-size=128", "/opt/hie/bin/hie-agent.js"]
CMD ["start", "--config", "/etc/hie-agent/agent.yaml"]
