/**
 * The PostgreSQL schema, as numbered migrations. Applied ones are recorded in
 * `vs_schema_migrations`; a released migration never changes, a new one is appended.
 *
 * ```
 * vs_meta          key → bigint: head (last seq handed out; its row is the push lock),
 *                  horizon (highest collected tombstone seq)
 * vs_collections   schema + running digest (64 hex)
 * vs_documents     the newest version of each (collection, id) under a unique seq: read in
 *                  seq order it IS the change log; re-storing a document moves it to its
 *                  new seq. unchanged_from = the replica whose push was stored exactly as
 *                  pushed (echo suppression); hash = SHA-256 of the canonical encoding
 *                  (NULL for tombstones, which are not in the digest); vector = bytea,
 *                  little-endian in the collection's dtype
 * vs_replicas      per (device, epoch): applied LSN, first LSN of its latest push, acked
 *                  cursor, last seen
 * vs_replica_ops   (replica, lsn) → hash of the op accepted under that LSN (replays)
 * vs_conflicts     one row per resolved conflict: winner (as stored) and loser (as it was)
 * vs_device_tokens token hash → device, revoked flag
 * ```
 *
 * Same layout as the SQLite store, with PostgreSQL types (bigint for seqs, LSNs and
 * milliseconds, boolean flags, bytea for vectors and hashes).
 */

/** One step of the schema; versions are 1, 2, 3, … */
export interface Migration {
  readonly version: number
  readonly name: string
  readonly sql: string
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
    CREATE TABLE vs_meta (
      key   text PRIMARY KEY,
      value bigint NOT NULL
    );
    INSERT INTO vs_meta (key, value) VALUES ('head', 0), ('horizon', 0);
    CREATE TABLE vs_collections (
      collection_id serial PRIMARY KEY,
      name          text NOT NULL UNIQUE,
      dims          integer NOT NULL,
      metric        text NOT NULL,
      dtype         text NOT NULL,
      digest        text NOT NULL
    );
    CREATE TABLE vs_documents (
      collection_id  integer NOT NULL REFERENCES vs_collections (collection_id),
      id             text NOT NULL,
      seq            bigint NOT NULL UNIQUE,
      deleted        boolean NOT NULL,
      vector         bytea,
      metadata       text,
      version_vector text NOT NULL,
      hlc_wall       bigint NOT NULL,
      hlc_counter    integer NOT NULL,
      origin         text NOT NULL,
      hash           bytea,
      unchanged_from text,
      updated_at_ms  bigint NOT NULL,
      PRIMARY KEY (collection_id, id)
    );
    CREATE INDEX vs_documents_tombstones ON vs_documents (updated_at_ms) WHERE deleted;
    CREATE TABLE vs_replicas (
      replica_id   text PRIMARY KEY,
      device_id    text NOT NULL,
      epoch        text NOT NULL,
      applied_lsn  bigint NOT NULL,
      ack_cursor   bigint NOT NULL,
      last_seen_ms bigint NOT NULL
    );
    CREATE TABLE vs_replica_ops (
      replica_id text NOT NULL,
      lsn        bigint NOT NULL,
      op_hash    bytea NOT NULL,
      PRIMARY KEY (replica_id, lsn)
    );
    CREATE TABLE vs_conflicts (
      seq                   bigint PRIMARY KEY,
      collection_id         integer NOT NULL REFERENCES vs_collections (collection_id),
      doc_id                text NOT NULL,
      winner_deleted        boolean NOT NULL,
      winner_vector         bytea,
      winner_metadata       text,
      winner_version_vector text NOT NULL,
      winner_hlc_wall       bigint NOT NULL,
      winner_hlc_counter    integer NOT NULL,
      winner_origin         text NOT NULL,
      loser_deleted         boolean NOT NULL,
      loser_vector          bytea,
      loser_metadata        text,
      loser_version_vector  text NOT NULL,
      loser_hlc_wall        bigint NOT NULL,
      loser_hlc_counter     integer NOT NULL,
      loser_origin          text NOT NULL,
      resolved_at_ms        bigint NOT NULL
    );
    CREATE INDEX vs_conflicts_collection ON vs_conflicts (collection_id, seq);
    CREATE TABLE vs_device_tokens (
      token_hash    text PRIMARY KEY,
      device_id     text NOT NULL,
      created_at_ms bigint NOT NULL,
      revoked       boolean NOT NULL
    );
    CREATE INDEX vs_device_tokens_device ON vs_device_tokens (device_id);
    `,
  },
  {
    version: 2,
    name: 'effective wall time of stored versions (S13)',
    // NULL: the version competes with its HLC wall time (stored without a clock bound).
    sql: 'ALTER TABLE vs_documents ADD COLUMN effective_wall_ms bigint;',
  },
  {
    version: 3,
    name: 'latest acceptance time, never going back (S13)',
    sql: "INSERT INTO vs_meta (key, value) VALUES ('accepted_ms', 0);",
  },
  {
    version: 4,
    name: "first LSN of each replica's latest push: op hashes kept two pushes (S2)",
    // 0: nothing is known about the push before, so the next push forgets nothing.
    sql: 'ALTER TABLE vs_replicas ADD COLUMN last_push_first_lsn bigint NOT NULL DEFAULT 0;',
  },
]

/** The schema version this code writes; newer databases are refused rather than misread. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length
