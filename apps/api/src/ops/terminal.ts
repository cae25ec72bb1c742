import { closeSync, openSync } from 'node:fs';
import { isatty } from 'node:tty';

/** The standard streams that were a terminal when the process started (checked before a hangup can hide it). */
export function terminalStreams(): number[] {
  return [0, 1, 2].filter((fd) => isatty(fd));
}

/**
 * After SIGHUP the terminal is gone, and Node's exit restores the terminal's modes on every standard stream that
 * was one: tcsetattr fails with EIO, a CHECK aborts, and the abort crashes again while printing its own stack, in
 * a loop that spins a core forever. Node skips a stream whose descriptor no longer points at the terminal, so
 * each is pointed at /dev/null; that also keeps the shutdown's own log lines from failing with EIO.
 */
export function detachFromTerminal(fds: readonly number[]): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
      // The lowest free descriptor is the one just closed, as the lower ones are all open.
      const reopened = openSync('/dev/null', fd === 0 ? 'r' : 'w');
      if (reopened !== fd) closeSync(reopened);
    } catch {
      // Left closed: Node skips a closed descriptor too.
    }
  }
}
