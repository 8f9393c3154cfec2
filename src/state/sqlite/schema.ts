/**
 * Schema migrations, applied in order inside one transaction each; `PRAGMA user_version` records the last
 * one applied. Append only: a migration that has shipped is never edited.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    program_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}'
  );
  CREATE TABLE identities (
    destination TEXT NOT NULL,
    user_id TEXT NOT NULL,
    traits TEXT NOT NULL,
    hash TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (destination, user_id)
  ) WITHOUT ROWID;
  CREATE TABLE deliveries (
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    payload TEXT,
    run_id INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (destination, key)
  ) WITHOUT ROWID;
  -- Only the rows status and retry look for: a full status index would be rewritten on every delivery.
  CREATE INDEX deliveries_needing_retry ON deliveries (destination, status) WHERE status IN ('failed', 'dead');
  CREATE TABLE lock (
    program_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    acquired_at TEXT NOT NULL
  );
  `,
  `
  -- sync --quick: where the last successful run of a program's API source left off (epoch ms).
  CREATE TABLE watermarks (
    program_id TEXT NOT NULL,
    source TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (program_id, source)
  );
  `,
  `
  -- Answers of lookup APIs (Cello codes and links), so a later run asks again only what may have changed.
  CREATE TABLE lookup_cache (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    fetched_at TEXT NOT NULL,
    PRIMARY KEY (service, key)
  ) WITHOUT ROWID;
  `,
  `
  -- How many tier transitions each identity has had acknowledged: the ordinal in a Referral Tier Changed key.
  ALTER TABLE identities ADD COLUMN tier_changes INTEGER NOT NULL DEFAULT 0;
  `,
  `
  -- Programs whose history this state delivered, per source and destination namespace: a run under another
  -- program id would send the same history again under new ids, so it needs --new-program.
  CREATE TABLE programs (
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    namespace TEXT NOT NULL,
    program_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (source, destination, namespace, program_id)
  ) WITHOUT ROWID;
  -- 'superseded': a refused identify that a newer acknowledged one replaced; retry never sends it.
  CREATE TABLE deliveries_v5 (
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'dead', 'superseded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    payload TEXT,
    run_id INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (destination, key)
  ) WITHOUT ROWID;
  INSERT INTO deliveries_v5 SELECT destination, key, kind, user_id, status, attempts, last_error, payload, run_id, created_at, updated_at FROM deliveries;
  DROP TABLE deliveries;
  ALTER TABLE deliveries_v5 RENAME TO deliveries;
  CREATE INDEX deliveries_needing_retry ON deliveries (destination, status) WHERE status IN ('failed', 'dead');
  `,
  `
  -- The durable delivery queue (DESIGN.md §8): the operations planned and not yet settled, in order. Appends and
  -- deletes in seq order touch few pages; the ledger row (deliveries) says 'pending' and points at its entry.
  CREATE TABLE queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    program_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    operation TEXT NOT NULL
  );
  CREATE INDEX queue_by_destination ON queue (program_id, destination, seq);
  ALTER TABLE deliveries ADD COLUMN program_id TEXT;
  ALTER TABLE deliveries ADD COLUMN seq INTEGER;
  `,
  `
  -- B2B (DESIGN.md §11): what each destination last acknowledged of an account's traits, the accounts' diff baseline.
  CREATE TABLE accounts (
    destination TEXT NOT NULL,
    account_id TEXT NOT NULL,
    traits TEXT NOT NULL,
    hash TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (destination, account_id)
  ) WITHOUT ROWID;
  `,
  `
  -- The newest operation issued that carries a person's traits (subject 'identify') or an account's ('account'),
  -- acknowledged or not: its generation, which is part of its key, so that a new operation never reuses an older
  -- one's id (DESIGN.md §6); its key, whose ledger status says whether the destination's traits are known; the
  -- tier move it carried (JSON).
  CREATE TABLE generations (
    destination TEXT NOT NULL,
    subject TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    key TEXT NOT NULL,
    tier_move TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (destination, subject, subject_id)
  ) WITHOUT ROWID;
  -- What an older version left failed or pending is generation 0 (keyed by its traits hash alone, as it was): it is
  -- resent under its own id while the source still shows its traits, and replaced under a new id otherwise.
  INSERT INTO generations (destination, subject, subject_id, generation, key, tier_move, updated_at)
  SELECT destination, subject, subject_id, 0, key, NULL, updated_at FROM (
    SELECT destination, CASE kind WHEN 'identify' THEN 'identify' ELSE 'account' END AS subject, user_id AS subject_id, key, updated_at,
           ROW_NUMBER() OVER (PARTITION BY destination, kind, user_id ORDER BY updated_at DESC, key DESC) AS n
    FROM deliveries WHERE kind IN ('identify', 'object') AND status IN ('pending', 'failed'))
  WHERE n = 1;
  `,
  `
  -- 'held' and 'skipped': events the campaign guard kept from a history load (plan/recent-events.ts). Held ones
  -- wait, with their operation, for a later run's decision; skipped ones are never sent.
  CREATE TABLE deliveries_v9 (
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'dead', 'superseded', 'held', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    payload TEXT,
    run_id INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    program_id TEXT,
    seq INTEGER,
    PRIMARY KEY (destination, key)
  ) WITHOUT ROWID;
  INSERT INTO deliveries_v9 (destination, key, kind, user_id, status, attempts, last_error, payload, run_id, created_at, updated_at, program_id, seq)
  SELECT destination, key, kind, user_id, status, attempts, last_error, payload, run_id, created_at, updated_at, program_id, seq FROM deliveries;
  DROP TABLE deliveries;
  ALTER TABLE deliveries_v9 RENAME TO deliveries;
  CREATE INDEX deliveries_needing_retry ON deliveries (destination, status) WHERE status IN ('failed', 'dead');
  -- The held events a run decides on (its own, by run), and those status counts.
  CREATE INDEX deliveries_held ON deliveries (program_id, run_id) WHERE status = 'held';
  `,
  `
  -- Rotated credentials (state rotate): the namespace new credentials give (alias) stands for the one the history
  -- was delivered under, so ids keep being derived from that one. Fingerprints only, never a credential.
  CREATE TABLE namespace_aliases (
    destination TEXT NOT NULL,
    alias TEXT NOT NULL,
    namespace TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (destination, alias)
  ) WITHOUT ROWID;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;
/** Tables a referral-sync state file must have; anything else is somebody else's database. */
export const REQUIRED_TABLES = ['runs', 'identities', 'deliveries', 'lock'] as const;
