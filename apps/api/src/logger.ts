import pino, { type Logger, type LoggerOptions } from 'pino';
import { scrubQueryError } from './db/pg-errors.ts';

/**
 * Redacted at the logger, whatever code logs them: secret values, tokens, keys, credentials, authorization
 * headers and the bodies of secret writes. Fastify's request serializer already leaves headers and bodies out;
 * this is the second wall.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'password',
  'value',
  'values',
  'clientSecret',
  'accessToken',
  'refreshToken',
  'subjectToken',
  'token',
  'secret',
  'dek',
  'dataKey',
  'masterKey',
  'masterKeys',
  'privateKey',
  'body',
  'generated',
  '*.password',
  '*.value',
  '*.values',
  '*.clientSecret',
  '*.accessToken',
  '*.refreshToken',
  '*.subjectToken',
  '*.token',
  '*.secret',
  '*.dek',
  '*.dataKey',
  '*.masterKey',
  '*.masterKeys',
  '*.privateKey',
  '*.body',
  '*.generated',
  'err.parameters',
  'err.params',
];

/**
 * Path segments that are themselves credentials: the token of an intake link (`/v1/intake/<token>`; a link's id, a
 * UUID, stays readable). Request URLs are logged with these cut out, whatever route, if any, the request matched.
 */
const CREDENTIAL_SEGMENT =
  /(\/intake\/)(?![0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?:[/?#]|$))[^/?#]+/gi;

export function redactUrl(url: string | undefined): string | undefined {
  return url?.replace(CREDENTIAL_SEGMENT, '$1[redacted]');
}

interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  ip?: string;
  headers?: Record<string, unknown>;
  socket?: { remotePort?: number };
}

/**
 * Fastify's own request serializer (`incoming request` lines), with credentials cut out of the URL. The logger's
 * serializers are merged over Fastify's defaults when Fastify takes the logger instance, so this one is used.
 */
function serializeRequest(req: LoggedRequest) {
  return {
    method: req.method,
    url: redactUrl(req.url),
    version: req.headers?.['accept-version'],
    host: req.host,
    remoteAddress: req.ip,
    remotePort: req.socket?.remotePort,
  };
}

export function loggerOptions(level: string, pretty: boolean): LoggerOptions {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // Query errors lose their bind parameters before any logger sees them.
    serializers: {
      err: (err: Error) => pino.stdSerializers.err(scrubQueryError(err) as Error),
      req: serializeRequest,
    },
    base: { service: 'coffer-api' },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(pretty
      ? {
          transport: {
            target: 'pino-pretty',
            // One line per entry: an object's fields follow its message instead of one line each.
            options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,service', singleLine: true },
          },
        }
      : {}),
  };
}

export function createLogger(level: string, pretty: boolean, destination?: pino.DestinationStream): Logger {
  return destination ? pino(loggerOptions(level, false), destination) : pino(loggerOptions(level, pretty));
}
