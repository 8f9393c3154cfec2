/**
 * The house rules of DESIGN.md §2, checked by dependency-cruiser on every `npm test`
 * (test/unit/house-rules.test.ts). Paths are relative to the repository root. Type-only imports count
 * (tsPreCompilationDeps): a circle through types is still a circle. What an import graph cannot see (reading
 * process.env, calling process.exit) is checked by the same test on the code itself.
 */

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import circles, type-only imports included: move what both sides need to a module both can import (DESIGN.md §2).',
      from: {},
      to: { circular: true },
    },
    {
      name: 'plan-does-no-io',
      severity: 'error',
      comment:
        'plan/ is pure: it is handed the participants and a read-only view of the state, and imports only the model, the config, the destinations\' size limits and itself (DESIGN.md §2).',
      from: { path: '^src/plan/' },
      to: { pathNot: ['^src/(plan|model)/', '^src/config/(config|defaults)\\.ts$', '^src/destinations/limits\\.ts$', '^src/(errors|terminal-text)\\.ts$', '^(node:)?crypto$'] },
    },
    {
      name: 'model-does-no-io',
      severity: 'error',
      comment: 'model/ turns a participant into traits, events and ids; the referrer directory alone keeps an index in a temporary SQLite file, so that a large program does not fill the heap.',
      from: { path: '^src/model/', pathNot: '^src/model/referrer-directory\\.ts$' },
      to: { pathNot: ['^src/model/', '^src/config/(config|defaults)\\.ts$', '^src/(errors|terminal-text)\\.ts$', '^(node:)?crypto$'] },
    },
    {
      name: 'sources-know-no-destination',
      severity: 'error',
      comment: 'A source knows nothing of destinations (DESIGN.md §2).',
      from: { path: '^src/sources/' },
      to: { path: '^src/destinations/' },
    },
    {
      name: 'sources-are-separate',
      severity: 'error',
      comment: 'Each source has a room (sources/growsurf, sources/cello, …); what several read (CSV in sources/csv, paging, the Source interface) lives in sources/csv or beside the rooms, and imports no room.',
      from: { path: '^src/sources/([^/]+)/' },
      to: { path: '^src/sources/[^/]+/', pathNot: ['^src/sources/$1/', '^src/sources/csv/'] },
    },
    {
      name: 'shared-source-code-knows-no-source',
      severity: 'error',
      comment: 'What all sources share (sources/*.ts beside the rooms) is below every source: it imports none of their rooms but csv/.',
      from: { path: '^src/sources/[^/]+\\.ts$' },
      to: { path: '^src/sources/[^/]+/', pathNot: '^src/sources/csv/' },
    },
    {
      name: 'destinations-know-no-source',
      severity: 'error',
      comment: 'A destination knows nothing of sources (DESIGN.md §2).',
      from: { path: '^src/destinations/' },
      to: { path: '^src/sources/' },
    },
    {
      name: 'only-cli-imports-cli',
      severity: 'error',
      comment: 'cli/ is the top: it wires the rest together, and nothing below it may depend on it.',
      from: { pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'only-cli-imports-process',
      severity: 'error',
      comment: 'Only cli/ reads the environment and decides exit codes (DESIGN.md §2); node:process is how a module would do either without the global.',
      from: { pathNot: '^src/cli/' },
      to: { path: '^(node:)?process$' },
    },
    {
      name: 'wiring-imports-no-command',
      severity: 'error',
      comment: 'cli/wiring turns env, config and flags into sources, destinations and state; commands import it, never the reverse.',
      from: { path: '^src/cli/wiring/' },
      to: { path: '^src/cli/(commands|run)/|^src/cli/main\\.ts$' },
    },
    {
      name: 'output-imports-nothing-of-the-cli',
      severity: 'error',
      comment: 'cli/output writes text, JSON and progress; it knows no command, step or wiring.',
      from: { path: '^src/cli/output/' },
      to: { path: '^src/cli/(commands|run|wiring)/|^src/cli/main\\.ts$' },
    },
    {
      name: 'steps-import-no-command',
      severity: 'error',
      comment: 'cli/run holds the steps several commands share; a command uses them, never the reverse.',
      from: { path: '^src/cli/run/' },
      to: { path: '^src/cli/commands/|^src/cli/main\\.ts$' },
    },
    {
      name: 'commands-import-no-command',
      severity: 'error',
      comment: 'One module per command, each standing alone; what two commands share goes to cli/run or cli/wiring. sync and backfill --dry-run are diff, so sync may call it.',
      from: { path: '^src/cli/commands/', pathNot: '^src/cli/commands/sync\\.ts$' },
      to: { path: '^src/cli/commands/' },
    },
    {
      name: 'sync-imports-only-diff',
      severity: 'error',
      comment: 'sync and backfill --dry-run are diff: the one command another may call.',
      from: { path: '^src/cli/commands/sync\\.ts$' },
      to: { path: '^src/cli/commands/', pathNot: '^src/cli/commands/diff\\.ts$' },
    },
    {
      name: 'state-is-below-the-run',
      severity: 'error',
      comment: 'state/ stores what the rest decides: it imports no source, destination, HTTP client or engine.',
      from: { path: '^src/state/' },
      to: { path: '^src/(sources|destinations|http|apply)/' },
    },
    {
      name: 'backends-are-separate',
      severity: 'error',
      comment: 'The SQLite and PostgreSQL backends share only what lives beside them in state/.',
      from: { path: '^src/state/(sqlite|postgres)/' },
      to: { path: '^src/state/(sqlite|postgres)/', pathNot: '^src/state/$1/' },
    },
    {
      name: 'databases-only-in-state',
      severity: 'error',
      comment: 'Only state/ talks to a database (and the referrer directory to its temporary index).',
      from: { pathNot: ['^src/state/', '^src/model/referrer-directory\\.ts$'] },
      to: { path: '(^|/)node_modules/(better-sqlite3|pg|pg-[a-z-]+)/' },
    },
    {
      name: 'network-only-in-http-and-destinations',
      severity: 'error',
      comment: 'Requests go through http/ (and the vendors\' SDKs, which destinations/ drive); the rest is handed a client.',
      from: { path: '^src/', pathNot: ['^src/(http|destinations)/'] },
      to: { path: ['(^|/)node_modules/(undici|@segment/analytics-node|customerio-node)/', '^(node:)?(http|https|http2|net|tls|dgram|dns)$'] },
    },
    {
      name: 'no-require-outside-http',
      severity: 'error',
      comment:
        'createRequire loads modules the import graph cannot follow; http/undici.ts alone uses it, to load undici as CommonJS beside the global fetch (it says why).',
      from: { path: '^src/', pathNot: '^src/http/undici\\.ts$' },
      to: { path: '^(node:)?module$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types'],
    },
    exclude: { path: '^(dist|node_modules)/' },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
