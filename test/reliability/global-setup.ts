import { buildApi } from '../support/build.ts';

/** The processes under test run the built bundle, exactly as `npm start` does. */
export default async function setup(): Promise<void> {
  await buildApi();
}
