#!/usr/bin/env node
// Entry point: refuse old Node early with a clear message, then run the CLI. In a checkout the TypeScript
// sources run directly (Node 24 strips types); the container image ships only the compiled dist/.
import { existsSync } from 'node:fs';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  console.error(
    `plugboard needs Node.js 24 or newer; this is ${process.version}. ` +
      'Inside the repository, run it through npm (npm start, npx plugboard), which uses the pinned Node 24.',
  );
  process.exit(1);
}
const source = new URL('../src/cli/main.ts', import.meta.url);
const built = new URL('../dist/cli/main.js', import.meta.url);
// PLUGBOARD_FROM_DIST=1 runs the compiled output in a checkout too (benchmarks measure what the image runs).
const entry = existsSync(source) && process.env.PLUGBOARD_FROM_DIST !== '1' ? source : built;
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
