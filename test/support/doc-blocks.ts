import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './build.ts';

export interface DocBlock {
  /** The fence's language (`sh`, `ts`, `text`, …); empty for a bare fence. */
  lang: string;
  /** What a `<!-- readme-test: … -->` marker on the line before the fence says, if there is one. */
  directive: string | undefined;
  code: string;
  /** 1-based line of the block's first line of code. */
  line: number;
}

const MARKER = /^<!-- readme-test: (.+?) -->$/;

/**
 * Every fenced block of a Markdown file, with the marker before it. A marker with no block after it is an error, so
 * a marker cannot silently rot.
 */
export function docBlocks(relative: string): DocBlock[] {
  const lines = readFileSync(path.join(repoRoot, relative), 'utf8').split('\n');
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const marker = MARKER.exec(lines[i] ?? '');
    const fenceAt = marker ? i + 1 : i;
    const fence = /^```(\S*)\s*$/.exec(lines[fenceAt] ?? '');
    if (!fence) {
      if (marker) throw new Error(`${relative}:${i + 1}: readme-test marker without a code block after it`);
      continue;
    }
    const end = lines.findIndex((l, j) => j > fenceAt && l === '```');
    if (end < 0) throw new Error(`${relative}:${fenceAt + 1}: unterminated code block`);
    blocks.push({
      lang: fence[1] ?? '',
      directive: marker?.[1],
      code: lines.slice(fenceAt + 1, end).join('\n'),
      line: fenceAt + 2,
    });
    i = end;
  }
  return blocks;
}

export const isShell = (b: DocBlock): boolean => b.lang === 'sh' || b.lang === 'bash';

/** One piece of a document's script, and the document line its first line came from. */
export interface ScriptPart {
  code: string;
  line: number;
}

export interface ShellRun {
  code: number;
  stdout: string;
  stderr: string;
  /** `file:line` of the command that failed, when one did. */
  failedAt: string | undefined;
}

const FAILED = '__coffer_docs_failed_at__';

/**
 * Runs a document's parts in ONE bash process, in order, as a user pasting them into one terminal would: a variable
 * set by one part is seen by the next. `set -e` stops at the first failing command, and an ERR trap reports its
 * line, which is mapped back to the document's own line.
 */
export function runShellDocument(
  file: string,
  parts: ScriptPart[],
  opts: { cwd: string; env: Record<string, string>; timeoutMs?: number },
): Promise<ShellRun> {
  const header = ['set -Eeuo pipefail', `trap 'echo "${FAILED} $LINENO" >&2' ERR`];
  const lines = [...header];
  const origin: number[] = header.map(() => 0);
  for (const part of parts) {
    part.code.split('\n').forEach((l, k) => {
      lines.push(l);
      origin.push(part.line + k);
    });
  }
  return new Promise((resolve) => {
    execFile(
      'bash',
      ['--norc', '--noprofile', '-c', lines.join('\n')],
      { cwd: opts.cwd, env: opts.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const at = new RegExp(`${FAILED} (\\d+)`).exec(stderr);
        const docLine = at ? origin[Number(at[1]) - 1] : undefined;
        resolve({
          code: err ? ((err as { code?: number }).code ?? 1) : 0,
          stdout,
          stderr: stderr.replace(new RegExp(`${FAILED} \\d+\\n?`, 'g'), ''),
          failedAt: docLine ? `${file}:${docLine}` : undefined,
        });
      },
    );
  });
}

/** `bash -n`: the block parses as shell, for blocks that cannot be run here. */
export function shellSyntaxProblem(code: string): Promise<string | null> {
  return new Promise((resolve) => {
    const child = execFile('bash', ['-n'], (err, _stdout, stderr) => resolve(err ? stderr || err.message : null));
    child.stdin?.end(code);
  });
}
