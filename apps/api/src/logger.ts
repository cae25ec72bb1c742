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

export function loggerOptions(level: string, pretty: boolean): LoggerOptions {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // Query errors lose their bind parameters before any logger sees them.
    serializers: { err: (err: Error) => pino.stdSerializers.err(scrubQueryError(err) as Error) },
    base: { service: 'coffer-api' },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(pretty
      ? {
          transport: {
            target: 'pino-pretty',
            options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,service' },
          },
        }
      : {}),
  };
}

export function createLogger(level: string, pretty: boolean, destination?: pino.DestinationStream): Logger {
  return destination ? pino(loggerOptions(level, false), destination) : pino(loggerOptions(level, pretty));
}
