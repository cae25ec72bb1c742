import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from './build.ts';

export interface ReadmeBlock {
  /** What the marker says to do: `run`, `tsx`, `workflow`, or `file <path>`. */
  directive: string;
  lang: string;
  code: string;
  line: number;
}

/**
 * The fenced blocks a README marks for testing with `<!-- readme-test: <directive> -->` on the line before the
 * fence. Unmarked blocks are prose; a marker without a block after it is an error, so a marker cannot silently rot.
 */
export function readmeBlocks(relative: string): ReadmeBlock[] {
  const lines = readFileSync(path.join(repoRoot, relative), 'utf8').split('\n');
  const blocks: ReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const marker = /^<!-- readme-test: (.+?) -->$/.exec(lines[i] ?? '');
    if (!marker) continue;
    const fence = /^```(\w+)/.exec(lines[i + 1] ?? '');
    if (!fence) throw new Error(`${relative}:${i + 1}: readme-test marker without a code block after it`);
    const end = lines.findIndex((l, j) => j > i + 1 && l === '```');
    if (end < 0) throw new Error(`${relative}:${i + 2}: unterminated code block`);
    blocks.push({
      directive: marker[1] as string,
      lang: fence[1] as string,
      code: lines.slice(i + 2, end).join('\n'),
      line: i + 2,
    });
    i = end;
  }
  return blocks;
}
