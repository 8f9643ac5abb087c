import { createServer, type IncomingMessage } from 'node:http'
import { join } from 'node:path'
import { createSyncServer } from '@velosync/server'
import { SqliteServerStore } from '@velosync/storage-sqlite'
import Database from 'better-sqlite3'
import { SocketByteCounter, listen } from './socket-byte-counter.js'
import { float64Blob, type NaiveDocument } from './naive.js'

/** What a benchmark server runs. */
export type BenchServerConfig =
  | {
      readonly mode: 'velosync'
      readonly dir: string
      readonly synchronous: 'full' | 'normal'
      /** Devices to register, with the SHA-256 of their tokens. */
      readonly devices: ReadonlyArray<{ deviceId: string; tokenHash: string }>
    }
  | { readonly mode: 'naive'; readonly dir: string; readonly batch: number }

/** A benchmark server whose sockets count the bytes they carry. */
export interface BenchServer {
  readonly url: string
  /** Bytes on the server's sockets since the last reset; `reset` starts counting again. */
  bytes(reset?: boolean): Promise<number>
  /** The server's digest of a collection (VeloSync mode only). */
  digest(collection: string): Promise<string | undefined>
  close(): Promise<void>
}

/** Starts a VeloSync sync server (or the original prototype's) in this process. */
export async function startBenchServer(
  config: BenchServerConfig,
): Promise<BenchServer> {
  if (config.mode === 'naive') {
    const naive = startNaiveServer(config.dir, config.batch)
    const counter = new SocketByteCounter(naive.server)
    const port = await listen(naive.server)
    return {
      url: `http://127.0.0.1:${port}`,
      bytes: (reset = false) => Promise.resolve(counter.bytes(reset)),
      digest: () => Promise.resolve(undefined),
      close: naive.close,
    }
  }
  const store = SqliteServerStore.open({
    path: join(config.dir, 'server.db'),
    synchronous: config.synchronous,
  })
  for (const { deviceId, tokenHash } of config.devices) {
    await store.createDeviceToken(deviceId, tokenHash)
  }
  // The server `velosync serve` runs; its Node server lets the sockets be counted.
  const listening = await createSyncServer({
    store,
    auth: { mode: 'token' },
  }).listen({ port: 0 })
  const counter = new SocketByteCounter(listening.server)
  return {
    url: `http://127.0.0.1:${listening.port}`,
    bytes: (reset = false) => Promise.resolve(counter.bytes(reset)),
    digest: (collection) => store.digest(collection),
    close: async () => {
      await listening.close()
      await store.close()
    },
  }
}

/**
 * The prototype's server: documents posted as JSON with float64 number-array vectors,
 * stored as float64 BLOBs (SQLite's defaults, one transaction per request), served back
 * the same way in pages of `batch`.
 */
function startNaiveServer(dir: string, batch: number) {
  const db = new Database(join(dir, 'naive-server.db'))
  db.exec(
    'CREATE TABLE docs (seq INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, vector BLOB NOT NULL, metadata TEXT NOT NULL)',
  )
  const insert = db.prepare(
    'INSERT INTO docs (id, vector, metadata) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET vector = excluded.vector, metadata = excluded.metadata',
  )
  const insertAll = db.transaction((docs: readonly NaiveDocument[]) => {
    for (const doc of docs) {
      insert.run(doc.id, float64Blob(doc.vector), JSON.stringify(doc.metadata))
    }
  })
  const page = db.prepare(
    'SELECT seq, id, vector, metadata FROM docs WHERE seq > ? ORDER BY seq LIMIT ?',
  )
  const handle = async (request: IncomingMessage): Promise<string> => {
    const url = new URL(request.url ?? '/', 'http://localhost')
    if (request.method === 'POST') {
      const { docs } = JSON.parse(await readText(request)) as {
        docs: NaiveDocument[]
      }
      insertAll(docs)
      return JSON.stringify({ inserted: docs.length })
    }
    const after = Number(url.searchParams.get('after') ?? 0)
    const rows = page.all(after, batch) as Array<{
      seq: number
      id: string
      vector: Buffer
      metadata: string
    }>
    return JSON.stringify({
      docs: rows.map((row) => ({
        id: row.id,
        vector: Array.from(
          new Float64Array(
            row.vector.buffer,
            row.vector.byteOffset,
            row.vector.byteLength / 8,
          ),
        ),
        metadata: JSON.parse(row.metadata) as unknown,
      })),
      next: rows.at(-1)?.seq ?? after,
    })
  }
  const server = createServer((request, response) => {
    void handle(request).then(
      (body) => {
        response.writeHead(200, { 'content-type': 'application/json' })
        response.end(body)
      },
      (error: unknown) => {
        response.writeHead(400, { 'content-type': 'application/json' })
        response.end(JSON.stringify({ error: String(error) }))
      },
    )
  })
  return {
    server,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => {
          db.close()
          done()
        })
        server.closeAllConnections()
      }),
  }
}

async function readText(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
