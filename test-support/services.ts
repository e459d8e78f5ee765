// Shared by the adapters' test suites (imported from each adapter's test/services.ts): which services are up, and
// `describeService`, which runs, skips visibly or fails a service's tests accordingly.
import mysql from 'mysql2/promise'
import pg from 'pg'
import { describe } from 'vitest'

/**
 * Service tests talk to real databases. When one is unreachable they skip with the reason in the test name,
 * except under STOCKCAST_REQUIRE_SERVICES=1 (set by .ci/run), where unreachable fails the run.
 */
const REQUIRED = process.env.STOCKCAST_REQUIRE_SERVICES === '1'

export const PG_URL = process.env.STOCKCAST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const MYSQL_URL = process.env.STOCKCAST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test'

async function probe(name: string, fn: () => Promise<void>): Promise<string | null> {
  try {
    await Promise.race([fn(), new Promise((_, rej) => setTimeout(() => rej(new Error('timed out after 3 s')), 3000))])
    return null
  } catch (e) {
    return `${name} unreachable: ${(e as Error).message}`
  }
}

/** Null when PostgreSQL answers, else why not. */
export const pgDown = await probe('PostgreSQL', async () => {
  const c = new pg.Client({ connectionString: PG_URL })
  await c.connect()
  await c.query('SELECT 1')
  await c.end()
})

/** Null when MariaDB/MySQL answers, else why not. */
export const mysqlDown = await probe('MariaDB/MySQL', async () => {
  const c = await mysql.createConnection(MYSQL_URL)
  await c.query('SELECT 1')
  await c.end()
})

/** `describe` that runs when the service is up, fails under STOCKCAST_REQUIRE_SERVICES=1, else skips visibly. */
export function describeService(down: string | null, name: string, fn: () => void): void {
  if (down === null) describe(name, fn)
  else if (REQUIRED) {
    describe(name, () => {
      throw new Error(`${down} (STOCKCAST_REQUIRE_SERVICES=1: service tests must run)`)
    })
  } else describe.skip(`${name} [skipped: ${down}]`, fn)
}

/** A unique, valid identifier prefix per test run (tables and schemas of parallel runs never collide). */
export function uniquePrefix(base: string): string {
  return `${base}_${process.pid}_${Math.floor(Math.random() * 1e6)}`
}
