import { symbols } from 'pino';

/**
 * Exit status when a second SIGINT or SIGTERM ends a shutdown early: 128 + the signal's number, what a shell
 * reports for a process that signal ended, so a supervisor can tell an interrupted drain from a clean stop (0)
 * and from a failure (1).
 */
export const SECOND_SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

type Signal = keyof typeof SECOND_SIGNAL_EXIT;

/**
 * How long the process may stay alive once stop() finished. Past it, whatever still holds the event loop is a
 * leak: its kinds are logged (process.getActiveResourcesInfo()) and the process exits anyway.
 */
const LINGER_MS = 5000;

/** pino's call shape; a pino logger (also fastify's app.log) is flushed before any explicit exit. */
export interface ShutdownLog {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

export interface ShutdownOptions {
  log: ShutdownLog;
  /** Drains and then closes every handle the command opened, so that the process can end by itself. */
  stop(): Promise<void>;
  /** Writes buffered log lines synchronously. Default: the pino logger's own destination, if it has one. */
  flush?(): void;
}

export interface Shutdown {
  /** Resolves with the exit status once stop() finished: the status begin() gave, or 1 if stop() failed. */
  readonly finished: Promise<number>;
  /** Starts the shutdown as a signal does, for another reason (e.g. lost leadership), to exit with `status`. */
  begin(reason: string, status?: number): void;
}

/**
 * How every long-running command stops. The first SIGTERM or SIGINT starts stop() (readiness fails, in-flight
 * work drains up to its deadline, handles close) and `finished` then resolves with 0, which the command returns;
 * the process ends when its event loop is empty. A second signal at any point after that exits at once with
 * SECOND_SIGNAL_EXIT. Logs are flushed before either explicit exit.
 */
export function shutdownOnSignals(o: ShutdownOptions): Shutdown {
  const flush = () => {
    try {
      (o.flush ?? (() => flushPino(o.log)))();
    } catch {
      // a destination already closed has nothing left to write
    }
  };
  let stopping = false;
  let settle: (status: number) => void = () => {};
  const finished = new Promise<number>((r) => {
    settle = r;
  });

  const begin = (status: number, fields: object) => {
    if (stopping) return;
    stopping = true;
    o.log.info(fields, 'shutting down');
    o.stop()
      .then(
        () => status,
        (err: unknown) => {
          o.log.error({ err: err instanceof Error ? err.message : String(err) }, 'shutdown failed');
          return 1;
        },
      )
      .then((code) => {
        flush();
        const linger = setTimeout(() => {
          o.log.warn(
            { handles: countKinds(process.getActiveResourcesInfo()) },
            'still running after shutdown: a handle was left open; exiting anyway',
          );
          flush();
          process.exit(code);
        }, LINGER_MS);
        linger.unref(); // fires only if something else still holds the event loop
        settle(code);
      });
  };

  const onSignal = (signal: Signal) => {
    if (!stopping) return begin(0, { signal });
    o.log.warn({ signal }, 'second signal: exiting now');
    flush();
    process.exit(SECOND_SIGNAL_EXIT[signal]);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return { finished, begin: (reason, status = 0) => begin(status, { reason }) };
}

function flushPino(log: ShutdownLog): void {
  const stream = (log as { [symbols.streamSym]?: { flushSync?: () => void } })[symbols.streamSym];
  stream?.flushSync?.();
}

function countKinds(kinds: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const k of kinds) counts[k] = (counts[k] ?? 0) + 1;
  return counts;
}
