# rosterd container image (issue 5, PRODUCT.md §9). Three stages:
#   build:   npm ci (the lockfile's exact versions; CI runs npm install) and npm run build -> dist/
#   deps:    production dependencies only (npm ci --omit=dev), with the compilers that ssh2's
#            optional native crypto and rosterd's addon (native/) need, which stay out
#            of the final image
#   runtime: node, dist/, production node_modules, the migrations; runs as an unprivileged user
# Compose file for a local stack (Postgres + mail catcher): docker/compose.yml.

ARG NODE_IMAGE=node:22-slim

FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY native ./native
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
COPY native ./native
# The addon is optional (rosterd runs without it): an empty folder when it did not build, so that
# the copy below still works.
RUN npm ci --omit=dev && npm cache clean --force && mkdir -p native/build/Release

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    DATA_DIR=/data \
    SFTP_PORT=2222 \
    HTTP_PORT=8080
WORKDIR /app
COPY package.json package-lock.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=deps /app/native/build/Release ./native/build/Release
COPY --from=build /app/dist ./dist
# Migrations are read at run time from src/store/migrations (next to package.json).
COPY src/store/migrations ./src/store/migrations
# The data directory holds host keys and roster files (student data): the daemon's user only.
# Created before VOLUME so that a new named volume starts with this owner and mode.
RUN mkdir -p /data && chown node:node /data && chmod 700 /data
USER node
VOLUME /data
# SFTP, then /healthz /readyz /metrics
EXPOSE 2222 8080
# slim images have no curl; node has fetch.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.HTTP_PORT || 8080) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM starts a graceful shutdown (transfers and imports get SHUTDOWN_GRACE_SECONDS).
STOPSIGNAL SIGTERM
CMD ["node", "dist/cli/main.js", "serve"]
