export { CofferClient, type CofferClientOptions } from './client.ts';
export { CofferError } from './errors.ts';
