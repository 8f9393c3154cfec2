import { createRequire } from 'node:module';

/**
 * The undici package, loaded so that it leaves Node's global fetch alone.
 *
 * Loading undici runs its lib/global.js, which installs an Agent of its own as the process-wide dispatcher when
 * none is set yet (undici 6.29 does; checked with `import('undici')` on Node 20.20). Node's built-in fetch,
 * which the Segment and Customer.io SDKs use, creates its own dispatcher lazily on its first call, so it would
 * find and use the package's instead. With undici 7 that breaks both SDKs (UND_ERR_INVALID_ARG on the
 * Content-Length header customerio-node sets); with any version it would put their requests on a pool we never
 * meant to share. So undici is required at one known point, and the slot it filled is emptied again when it was
 * empty before: fetch then makes its own dispatcher, as if undici had never been loaded.
 * Everything in this project imports undici from here, never from 'undici' directly.
 * test/integration/http-coexistence.test.ts fails if a later undici gets past this.
 */
const GLOBAL_DISPATCHER = Symbol.for('undici.globalDispatcher.1');

type GlobalSlot = Record<symbol, unknown>;
const slot = globalThis as unknown as GlobalSlot;
const before = slot[GLOBAL_DISPATCHER];
const require = createRequire(import.meta.url);
const undici = require('undici') as typeof import('undici');
if (before === undefined && slot[GLOBAL_DISPATCHER] !== undefined) {
  // The property is non-configurable but writable: it cannot be deleted, and an undefined value is what Node's
  // fetch checks for before it installs its own.
  slot[GLOBAL_DISPATCHER] = undefined;
}

export const Pool: typeof import('undici').Pool = undici.Pool;
export type Pool = import('undici').Pool;
export const Agent: typeof import('undici').Agent = undici.Agent;
export type Agent = import('undici').Agent;
export const errors: typeof import('undici').errors = undici.errors;
export type { Dispatcher } from 'undici';

/** True when the process-wide dispatcher is one of the undici package's (what this module exists to prevent). */
export function packageDispatcherInstalled(): boolean {
  return slot[GLOBAL_DISPATCHER] instanceof undici.Dispatcher;
}
