# One image for every role: `plugboard operator | gateway | standalone ...`.
# Build stage: compile TypeScript to dist/ and keep only production dependencies.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency would fetch a second Node binary; the base image already is Node 24.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts

# Runtime: distroless Node 24 (no shell, no package manager), non-root, read-only root filesystem friendly.
FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY bin ./bin
COPY crds ./crds
USER 65532:65532
ENTRYPOINT ["/nodejs/bin/node", "/app/bin/plugboard.js"]
CMD ["help"]
