#!/usr/bin/env node
// Thin launcher: everything lives in the compiled CLI, built by `prepare` on `npm ci` / `npm install`.
import { main } from '../dist/cli/main.js';

await main(process.argv);
