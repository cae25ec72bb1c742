import { type RouteName, routes } from '@coffer/contracts';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../apps/cli/src/program.ts';
import { COMMAND_ROUTES } from '../../apps/cli/src/route-coverage.ts';

/** Every command of the program by its words after `coffer`, e.g. `identities rotate-secret`. */
function commandPaths(cmd: Command, prefix: string[] = []): string[] {
  return cmd.commands.flatMap((c) => [[...prefix, c.name()].join(' '), ...commandPaths(c, [...prefix, c.name()])]);
}

describe('the CLI covers the route table', () => {
  it('gives every route of the contracts a command', () => {
    const covered = new Set<string>(Object.values(COMMAND_ROUTES).flat());
    const uncovered = (Object.keys(routes) as RouteName[]).filter((r) => !covered.has(r));
    expect(uncovered).toEqual([]);
  });

  it('names only commands the program has, so the table cannot claim a command that is gone', () => {
    const existing = new Set(commandPaths(buildProgram()));
    expect(Object.keys(COMMAND_ROUTES).filter((c) => !existing.has(c))).toEqual([]);
  });
});
