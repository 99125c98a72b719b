# syntax=docker/dockerfile:1
# One image for every role: `plugboard operator | gateway | standalone ...` (the chart passes the role as args).
# Pin both base images by digest in your registry mirror for reproducible builds (tags are used here because this
# repository cannot resolve digests offline).

# Build stage: compile the TypeScript to dist/, build the chat UI to dist/ui, keep only production dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /src
ENV npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency would fetch a second Node binary; the base image already is Node 24.
# Behind a TLS-intercepting proxy, pass its CA as a secret (`--secret id=extra-ca,src=corp-ca.pem`): npm trusts
# it for this step only (NODE_EXTRA_CA_CERTS adds to Node's own roots) and it is never stored in a layer.
RUN --mount=type=cache,target=/root/.npm --mount=type=secret,id=extra-ca \
  if [ -s /run/secrets/extra-ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/extra-ca; fi \
  && npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json vite.config.ts ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json \
  && npx vite build \
  && test -f dist/ui/index.html \
  && npm prune --omit=dev --ignore-scripts \
  && rm -rf node_modules/.cache

# Runtime: distroless Node 24 (no shell, no package manager), non-root, works with a read-only root filesystem.
FROM gcr.io/distroless/nodejs24-debian12:nonroot
LABEL org.opencontainers.image.title="plugboard" \
      org.opencontainers.image.description="Plugboard operator and OpenAI-compatible gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/plugboard/plugboard"
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build --chown=0:0 /src/package.json ./
COPY --from=build --chown=0:0 /src/node_modules ./node_modules
COPY --from=build --chown=0:0 /src/dist ./dist
COPY --chown=0:0 bin ./bin
COPY --chown=0:0 crds ./crds
# Files are owned by root and not writable by the runtime user; the process runs as nonroot (65532).
USER 65532:65532
# gateway API/UI, operator probes+metrics, gateway metrics (documentation only; the chart sets the ports).
EXPOSE 8080 8081 9090
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/plugboard.js"]
CMD ["help"]
