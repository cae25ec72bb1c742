import { CliError, EXIT } from './output.ts';

/** Reads a line from the terminal without echoing it (for client secrets and secret values). */
export function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    return Promise.reject(
      new CliError('no terminal to prompt on: pass the value with a flag or the environment', EXIT.usage),
    );
  }
  return new Promise((resolve, reject) => {
    let answer = '';
    // Echo off before the question appears: whatever is typed after it must never reach the screen.
    stdin.setRawMode(true);
    process.stderr.write(question);
    stdin.resume();
    stdin.setEncoding('utf8');
    const finish = (fn: () => void) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      fn();
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return finish(() => resolve(answer));
        if (ch === '\u0003') return finish(() => reject(new CliError('cancelled', EXIT.failure)));
        if (ch === '\u007f' || ch === '\b') answer = [...answer].slice(0, -1).join('');
        else if (ch >= ' ') answer += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** Reads a line with echo (for a client id). */
export function promptLine(question: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    return Promise.reject(
      new CliError('no terminal to prompt on: pass the value with a flag or the environment', EXIT.usage),
    );
  }
  process.stderr.write(question);
  return new Promise((resolve) => {
    stdin.resume();
    stdin.setEncoding('utf8');
    let buf = '';
    const onData = (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        stdin.off('data', onData);
        stdin.pause();
        resolve(buf.slice(0, nl).replace(/\r$/, ''));
      }
    };
    stdin.on('data', onData);
  });
}

/** All of stdin, as UTF-8. */
export async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}
