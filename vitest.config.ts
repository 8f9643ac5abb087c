import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const src = (pkg: string): string =>
  fileURLToPath(new URL(`./packages/${pkg}/src/index.ts`, import.meta.url))

export default defineConfig({
  resolve: {
    // Tests run against the sources; child processes spawned by tests use the build.
    alias: {
      '@velosync/core': src('core'),
      '@velosync/client': src('client'),
      // Before '@velosync/testkit': aliases match by prefix.
      '@velosync/testkit/server-store-suite': fileURLToPath(
        new URL(
          './packages/testkit/src/server-store-suite.ts',
          import.meta.url,
        ),
      ),
      '@velosync/testkit/postgres-test-setup': fileURLToPath(
        new URL(
          './packages/testkit/src/postgres-test-setup.ts',
          import.meta.url,
        ),
      ),
      '@velosync/testkit': src('testkit'),
      '@velosync/storage-sqlite': src('storage-sqlite'),
      '@velosync/storage-postgres': src('storage-postgres'),
      '@velosync/server': src('server'),
    },
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    reporters: ['default', './scripts/summary-reporter.ts'],
    // PostgreSQL for the tests that need it: VELOSYNC_TEST_PG_URL or a throwaway cluster.
    globalSetup: ['./packages/testkit/src/postgres-test-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})
