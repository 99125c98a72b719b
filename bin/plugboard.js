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
const entry = existsSync(source) ? source : new URL('../dist/cli/main.js', import.meta.url);
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
