import { createStockCache, memorySource } from '../src/index.js'
import { type ChangeCaptureHarness, runChangeCaptureConformance } from './conformance/index.js'

// The core's own change capture: the in-memory source marks its cache through transaction scopes.
runChangeCaptureConformance(
  async (schema): Promise<ChangeCaptureHarness> => {
    const db = memorySource(schema)
    const cache = createStockCache({ schema, reader: db.reader })
    db.attach(cache)
    return {
      cache,
      insert: async (table, row) => db.insert(table, row),
      update: async (table, id, patch) => db.update(table, id, patch),
      delete: async (table, id) => db.delete(table, id),
      async transaction(fn) {
        await db.transaction(async (tx) => {
          await fn({
            insert: async (t, r) => tx.insert(t, r),
            update: async (t, id, p) => tx.update(t, id, p),
            delete: async (t, id) => tx.delete(t, id),
          })
        })
      },
      settle: async () => {},
      close: () => cache.close(),
    }
  },
  { name: 'memorySource change capture conformance' },
)
