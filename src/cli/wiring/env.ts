/**
 * The process environment as the CLI reads it: `main` passes `process.env`, tests pass a plain object. Only
 * `cli/` reads it (DESIGN.md §2); everything below is handed the values it needs.
 */
export type Env = Readonly<Record<string, string | undefined>>;
