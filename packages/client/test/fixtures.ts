import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test as base } from 'vitest'
import { LocalStore, type LocalStoreOptions } from '../src/index.js'

interface Fixtures {
  /** A fresh temporary directory, removed after the test. */
  tmpDir: string
  /** Opens stores in `tmpDir`; every store opened is closed after the test. */
  openStore: (name?: string, options?: Partial<LocalStoreOptions>) => LocalStore
  /** A store with an 8-d cosine collection `docs`. */
  store: LocalStore
}

export const test = base.extend<Fixtures>({
  // eslint-disable-next-line no-empty-pattern
  tmpDir: async ({}, use) => {
    const dir = mkdtempSync(join(tmpdir(), 'velosync-test-'))
    await use(dir)
    rmSync(dir, { recursive: true, force: true })
  },
  openStore: async ({ tmpDir }, use) => {
    const opened: LocalStore[] = []
    await use((name = 'device.db', options = {}) => {
      const store = LocalStore.open({ path: join(tmpDir, name), ...options })
      opened.push(store)
      return store
    })
    for (const store of opened) store.close()
  },
  store: async ({ openStore }, use) => {
    const store = openStore()
    store.createCollection({ name: 'docs', dims: 8, metric: 'cosine' })
    await use(store)
  },
})

/** A deterministic non-zero 8-d vector. */
export function vec(seed: number, dims = 8): number[] {
  return Array.from(
    { length: dims },
    (_, i) => Math.sin(seed * 7.1 + i * 1.3) + (i === seed % dims ? 1 : 0),
  )
}
