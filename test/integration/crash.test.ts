import { backends } from '../support/backends.js';
import { crashSuite } from '../support/crash-suite.js';

crashSuite(backends().find((b) => b.name === 'sqlite')!);
