import { AuditEventView } from '@coffer/contracts';

/** One server-sent event, as the audit follow stream sends them. */
export interface ServerSentEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/**
 * Parses a text/event-stream body (the WHATWG rules that matter here: `field: value` lines, blank line ends an
 * event, `:` starts a comment, `data` lines join with a newline).
 */
export async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  let buffered = '';
  let id: string | undefined;
  let event = 'message';
  let data: string[] = [];
  const take = (line: string): ServerSentEvent | undefined => {
    if (line === '') {
      const out = data.length > 0 || event !== 'message' ? { id, event, data: data.join('\n') } : undefined;
      event = 'message';
      data = [];
      return out;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') id = value;
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    return undefined;
  };
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true });
    let nl = buffered.search(/\r?\n/);
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(buffered[nl] === '\r' ? nl + 2 : nl + 1);
      const e = take(line);
      if (e) yield e;
      nl = buffered.search(/\r?\n/);
    }
  }
}

/** The events of one follow session, validated against the contract; returns the last id seen when it ends. */
export async function* auditEventsOf(
  body: ReadableStream<Uint8Array>,
  onId: (id: string) => void,
): AsyncGenerator<AuditEventView> {
  for await (const e of serverSentEvents(body)) {
    if (e.id !== undefined) onId(e.id);
    if (e.event === 'audit') yield AuditEventView.parse(JSON.parse(e.data));
  }
}
