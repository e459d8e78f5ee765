import { PGlite } from '@electric-sql/pglite'
import type { InvalidationMessage } from 'stockcast'
import { runBusConformance } from 'stockcast/conformance'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fromPGlite, type SqlDb, sqlBus } from '../src/index.js'

// PGlite is one embedded session: its LISTEN/NOTIFY only reaches subscribers in the same process, which is what a
// cache on PGlite has. The bus works over it all the same (and sqlLock refuses it: nothing to exclude).
describe('sqlBus on PGlite', () => {
  let pglite: PGlite
  let db: SqlDb
  beforeAll(async () => {
    pglite = new PGlite()
    await pglite.waitReady
    db = fromPGlite(pglite)
  })
  afterAll(async () => {
    await pglite.close()
  })

  runBusConformance(({ channel }) => sqlBus(db, { channel }))

  it('carries a message of several notifications whole', async () => {
    const bus = sqlBus(db, { channel: 'pglite_parts' })
    const got: InvalidationMessage[] = []
    const stop = await bus.subscribe((m) => got.push(m))
    try {
      const products = Array.from({ length: 3000 }, (_, i) => `P-${i}`)
      await bus.publish({ products, version: 2, origin: 'a' })
      for (let i = 0; i < 200 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
      expect(got).toEqual([{ products, version: 2, origin: 'a' }])
    } finally {
      await stop()
    }
  })
})
