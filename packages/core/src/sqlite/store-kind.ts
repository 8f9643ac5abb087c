/** What {@link storeKindOf} needs of a SQLite binding (better-sqlite3's `Database` fits). */
export interface StoreKindDatabase {
  prepare(sql: string): { pluck(): { all(): unknown[] } }
}

/**
 * What a SQLite file holds, by its tables: nothing yet, a VeloSync device store, a
 * VeloSync server store, or only tables of something else.
 */
export type StoreKind = 'empty' | 'device' | 'server' | 'foreign'

/**
 * Tells the kinds of file apart before either store touches one, so that opening the
 * wrong file fails instead of adding tables to it (or misreading its schema version).
 *
 * @internal Shared by the device's store and the server's SQLite store; not for apps.
 */
export function storeKindOf(db: StoreKindDatabase): StoreKind {
  const tables = new Set(
    db
      .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
      .pluck()
      .all() as string[],
  )
  // vs_store first: an older server store added vs_schema_migrations to a device store
  // given to it by mistake, and that device store must still open. vs_meta alone marks a
  // server store from before vs_schema_migrations existed.
  if (tables.has('vs_store')) return 'device'
  if (tables.has('vs_schema_migrations') || tables.has('vs_meta'))
    return 'server'
  return tables.size === 0 ? 'empty' : 'foreign'
}
