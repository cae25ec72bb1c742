import { createHash } from 'node:crypto';
import pg from 'pg';

/**
 * Names for parameterised statements, derived from their text: the same text always gets the same name, so a
 * connection parses and plans a statement once and afterwards only binds and executes it. At most `limit`
 * distinct texts are named (the statements of this codebase are a few hundred at most); past that, new texts go
 * unnamed, so a connection's prepared statements stay bounded whatever the workload.
 */
export class StatementNames {
  private readonly names = new Map<string, string>();

  constructor(private readonly limit = 1_000) {}

  nameFor(text: string): string | undefined {
    const known = this.names.get(text);
    if (known !== undefined || this.names.size >= this.limit) return known;
    // PostgreSQL keeps 63 bytes of a name: a 120-bit digest of the text in 22 characters is far inside that.
    const name = `cf_${createHash('sha256').update(text).digest('base64url').slice(0, 20)}`;
    this.names.set(text, name);
    return name;
  }

  get size(): number {
    return this.names.size;
  }
}

/**
 * The one place that decides whether statements are prepared. On, a pg client that names every parameterised
 * statement it is handed unnamed (drizzle's are) after its text, and keeps the names the code gave its hot
 * statements (they label traces and pg_prepared_statements): PostgreSQL then plans each once per connection instead
 * of on every execution, which under row-level security costs more than executing it. Off (PgBouncer before 1.21 in
 * transaction mode), a client that drops every name, the code's own included, so nothing is prepared. Statements
 * without parameters (BEGIN, COMMIT, SET) and streamed ones (cursors) are left as they are either way.
 */
export function namingClient(names: StatementNames | null): typeof pg.Client {
  const query = pg.Client.prototype.query;
  class NamingClient extends pg.Client {}
  NamingClient.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const [config, values] = args;
    if (typeof config === 'string') {
      const name = names && Array.isArray(values) && values.length > 0 ? names.nameFor(config) : undefined;
      if (name) args[0] = { name, text: config };
    } else if (config !== null && typeof config === 'object') {
      const c = config as { text?: unknown; name?: unknown; values?: unknown; submit?: unknown };
      const params = Array.isArray(values) ? values : c.values;
      if (typeof c.submit === 'function' || typeof c.text !== 'string') {
        // a cursor or something pg will refuse: as it is
      } else if (!names) {
        if (c.name !== undefined) {
          const { name: _dropped, ...unnamed } = c;
          args[0] = unnamed;
        }
      } else if (c.name === undefined && Array.isArray(params) && params.length > 0) {
        const name = names.nameFor(c.text);
        if (name) args[0] = { ...c, name };
      }
    }
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  return NamingClient;
}
