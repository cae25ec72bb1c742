import { describe, expect, it } from 'vitest';
import {
  clipUtf8,
  parseStatement,
  parseUsernameTemplate,
  renderStatement,
  renderUsername,
  TemplateProblem,
} from './templates.ts';

const render = (text: string, name: string, extra: { password?: string; expiration?: Date } = {}) =>
  renderStatement(parseStatement(text, 'creation'), { name, ...extra });

describe('statement templates', () => {
  it('quotes {{name}} as an identifier and {{password}}, {{expiration}}, {{name_literal}} as literals', () => {
    expect(
      render('CREATE ROLE {{name}} LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}', 'v_app', {
        password: 'SCRAM-SHA-256$4096:abc',
        expiration: new Date('2030-01-02T03:04:05.000Z'),
      }),
    ).toBe(`CREATE ROLE "v_app" LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc' VALID UNTIL '2030-01-02T03:04:05.000Z'`);
    expect(render('COMMENT ON ROLE {{name}} IS {{name_literal}}', 'a')).toBe(`COMMENT ON ROLE "a" IS 'a'`);
  });

  it.each([
    [
      'a quote and a semicolon',
      'x"; DROP TABLE items; --',
      `"x""; DROP TABLE items; --"`,
      `'x"; DROP TABLE items; --'`,
    ],
    [
      'a single quote',
      "o'neil'); drop role postgres; --",
      `"o'neil'); drop role postgres; --"`,
      `'o''neil''); drop role postgres; --'`,
    ],
    ['a backslash', String.raw`a\'; select 1; --`, `"a\\'; select 1; --"`, String.raw` E'a\\''; select 1; --'`],
    ['a dollar quote', '$$; drop role x; $$', `"$$; drop role x; $$"`, `'$$; drop role x; $$'`],
  ])('a hostile value (%s) stays one identifier or one literal', (_label, value, ident, literal) => {
    expect(render('DROP ROLE {{name}}', value)).toBe(`DROP ROLE ${ident}`);
    // escapeLiteral writes a value with a backslash as ` E'…'` (leading space included), doubling the backslash.
    expect(render('SELECT {{name_literal}}', value)).toBe(`SELECT ${literal}`);
  });

  it('ignores braces and placeholders-lookalikes where SQL has its own quoting', () => {
    // A placeholder is only ever found bare; {{ inside quotes or comments is refused (see below), not filled.
    expect(
      render(`SELECT 'it''s', "a""b", $tag$ body $tag$, E'\\n', $1 -- fine\nFROM x WHERE y = {{name_literal}}`, 'v'),
    ).toBe(`SELECT 'it''s', "a""b", $tag$ body $tag$, E'\\n', $1 -- fine\nFROM x WHERE y = 'v'`);
  });

  it.each([
    ['CREATE ROLE {{ user }}', /unknown placeholder \{\{user\}\}/],
    ['CREATE ROLE "{{name}}"', /inside a quoted identifier/],
    ["ALTER ROLE {{name}} PASSWORD '{{password}}'", /inside a quoted string/],
    ["ALTER ROLE {{name}} PASSWORD E'x{{password}}'", /inside a quoted string/],
    ['SELECT $x$ {{name}} $x$', /inside a dollar-quoted body/],
    ['SELECT 1 -- {{name}}', /inside a comment/],
    ['SELECT 1 /* /* {{name}} */ */', /inside a comment/],
    ["SELECT 'open", /unterminated quoted string/],
    ['SELECT "open', /unterminated quoted identifier/],
    ['SELECT $a$ open', /unterminated \$a\$/],
    ['SELECT /* open', /unterminated/],
    ['SELECT {{name', /does not start a placeholder/],
  ])('refuses %s', (text, message) => {
    expect(() => parseStatement(text, 'creation')).toThrow(message);
  });

  it('allows only the placeholders a kind of statement has values for', () => {
    expect(() => parseStatement('ALTER ROLE {{name}} PASSWORD {{password}}', 'revocation')).toThrow(
      /cannot be used in revocation statements/,
    );
    expect(() => parseStatement('ALTER ROLE {{name}} VALID UNTIL {{expiration}}', 'revocation')).toThrow(
      TemplateProblem,
    );
    expect(parseStatement('ALTER ROLE {{name}} VALID UNTIL {{expiration}}', 'renew').uses).toEqual(
      new Set(['name', 'expiration']),
    );
  });
});

describe('username templates', () => {
  const now = new Date('2030-01-01T00:00:00Z');

  it('fills backend, identity (each clipped to 16 bytes), random and unix time', () => {
    const t = parseUsernameTemplate('v_{{backend}}_{{identity}}_{{random}}_{{unix_time}}');
    const name = renderUsername(t, { backend: 'orders', identity: 'billing-service-eu-west-1', now });
    expect(name).toMatch(/^v_orders_billing-service-_[a-z0-9]{12}_1893456000$/);
    expect(Buffer.byteLength(name)).toBeLessThanOrEqual(63);
  });

  it('never cuts a character in two, and never goes past 63 bytes whatever the identity is called', () => {
    expect(clipUtf8('ééééééééé', 5)).toBe('éé');
    const t = parseUsernameTemplate('v_{{backend}}_{{identity}}_{{random}}');
    for (const identity of ['😀'.repeat(40), 'x'.repeat(200), '"; drop role postgres; --']) {
      expect(Buffer.byteLength(renderUsername(t, { backend: 'b'.repeat(32), identity, now }))).toBeLessThanOrEqual(63);
    }
  });

  it.each([
    ['v_{{identity}}', /must contain \{\{random\}\}/],
    ['{{random}}', /must begin with literal text/],
    ['pg_{{random}}', /reserved/],
    ['v_{{role}}_{{random}}', /unknown placeholder/],
    ['v_\n{{random}}', /control characters/],
    [`${'x'.repeat(30)}{{identity}}{{identity}}{{random}}`, /at most 63/],
  ])('refuses %j', (text, message) => {
    expect(() => parseUsernameTemplate(text)).toThrow(message);
  });
});
