import type { Writable } from 'node:stream';
import type { CofferError } from '@coffer/sdk';

/** Exit codes, documented in `coffer --help` and the README. */
export const EXIT = { ok: 0, failure: 1, usage: 2, notFound: 3, denied: 4 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line on stderr with its exit code. Its message must never hold a secret value. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliError(message, EXIT.usage);

export function exitCodeFor(err: CofferError): ExitCode {
  switch (err.code) {
    case 'not_found':
      return EXIT.notFound;
    case 'forbidden':
    case 'unauthorized':
      return EXIT.denied;
    default:
      return EXIT.failure;
  }
}

/** The server's message (never a value: the API promises that), its code and the request id to quote. */
export function describeCofferError(err: CofferError): string {
  const details = err.details.length > 0 ? `\n${err.details.map((d) => `  ${d.path}: ${d.message}`).join('\n')}` : '';
  const ref = [err.code, err.requestId ? `request ${err.requestId}` : null].filter(Boolean).join(', ');
  return `${err.message} (${ref})${details}`;
}

export interface Style {
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  dim(s: string): string;
  bold(s: string): string;
}

const wrap = (open: number, close: number) => (s: string) => `\u001b[${open}m${s}\u001b[${close}m`;
const PLAIN: Style = { red: (s) => s, green: (s) => s, yellow: (s) => s, dim: (s) => s, bold: (s) => s };
const ANSI: Style = {
  red: wrap(31, 39),
  green: wrap(32, 39),
  yellow: wrap(33, 39),
  dim: wrap(2, 22),
  bold: wrap(1, 22),
};

let colorAllowed = true;
export function setColorAllowed(allowed: boolean): void {
  colorAllowed = allowed;
}

/** Colours only for a terminal, and never when NO_COLOR or --no-color says so. */
export function styleFor(stream: Writable & { isTTY?: boolean }): Style {
  return colorAllowed && stream.isTTY === true ? ANSI : PLAIN;
}

export const out = (s: string) => void process.stdout.write(s);
export const err = (s: string) => void process.stderr.write(s);

/** A message for the person at the terminal (stderr: stdout carries only data). */
export function note(message: string): void {
  err(`${message}\n`);
}

export function json(value: unknown): void {
  out(`${JSON.stringify(value, null, 2)}\n`);
}

const ANSI_CODE = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const visibleLength = (s: string) => [...s.replace(ANSI_CODE, '')].length;

/** Fixed-width columns (colour codes take no width); the last column is not padded. */
export function table(rows: string[][], header?: string[]): string {
  const all = header ? [header, ...rows] : rows;
  const widths: number[] = [];
  for (const r of all) {
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, visibleLength(c));
    });
  }
  return all
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - visibleLength(c))))
        .join('  ')
        .trimEnd(),
    )
    .map((l) => `${l}\n`)
    .join('');
}

/**
 * Progress for long imports and exports, on stderr and only on a terminal (a pipe or a CI log gets nothing),
 * rewriting one line. `done()` clears it.
 */
export class Progress {
  private readonly active: boolean;
  private last = 0;

  constructor(private readonly label: string) {
    this.active = process.stderr.isTTY === true;
  }

  update(text: string, force = false): void {
    if (!this.active) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    err(`\r\u001b[2K${this.label}: ${text}`);
  }

  done(): void {
    if (this.active) err('\r\u001b[2K');
  }
}
