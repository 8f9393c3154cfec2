import { afterAll } from 'vitest';
import { removeTempDirs } from './cli.js';

// Every test file's temporary directories (states, exports, plans) go when its tests are done, not left in /tmp.
afterAll(() => removeTempDirs());
