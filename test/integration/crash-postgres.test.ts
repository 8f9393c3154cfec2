import { describe, it } from 'vitest';
import { POSTGRES_SKIP_NOTE, postgresBackend } from '../support/backends.js';
import { crashSuite } from '../support/crash-suite.js';

const backend = postgresBackend();
// The same cases as crash.test.ts (test/support/crash-suite.ts), in a file of their own to run beside them.
if (backend) crashSuite(backend);
else describe('crash and resume, postgres state', () => it.skip(POSTGRES_SKIP_NOTE, () => undefined));
