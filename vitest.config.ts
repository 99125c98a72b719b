import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

if (Number(process.versions.node.split('.')[0]) < 24) {
  throw new Error(`Plugboard's tests need Node.js 24+ (this is ${process.version}); run them with npm test.`);
}

export default defineConfig({
  test: {
    reporters: ['default', ['json', { outputFile: 'reports/vitest.json' }]],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Most files start servers, and many start processes (CLIs, gateways, control planes, Chromium) that keep a
    // core busy of their own: one file per two cores, so a 2-core machine runs one file at a time.
    maxWorkers: Math.max(1, Math.floor(availableParallelism() / 2)),
    // Waits for a page or a process to catch up: generous, as a busy machine needs.
    expect: { poll: { timeout: 10_000 } },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.kube.test.ts', 'test/**/*.container.test.ts', 'test/**/*.cluster.test.ts'],
        },
      },
      {
        // Runs against a real kube-apiserver + etcd (see test/support/cluster.ts).
        extends: true,
        test: {
          name: 'kube',
          include: ['test/**/*.kube.test.ts'],
          globalSetup: ['test/support/global-setup.ts'],
        },
      },
      {
        // The image built from the Dockerfile, run as a black box through podman's Docker API with testcontainers
        // (see test/container/global-setup.ts).
        extends: true,
        test: {
          name: 'container',
          include: ['test/**/*.container.test.ts'],
          globalSetup: ['test/container/global-setup.ts'],
        },
      },
      {
        // End to end: the chart on a real single-node cluster (npm run cluster:up; see test/cluster/global-setup.ts).
        extends: true,
        test: {
          name: 'cluster',
          include: ['test/**/*.cluster.test.ts'],
          globalSetup: ['test/cluster/global-setup.ts'],
        },
      },
    ],
  },
});
