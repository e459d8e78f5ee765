import type { Transaction } from 'sequelize'
import type { StockSchema } from 'stockcast'
import { type CaptureWriter, type ChangeCaptureHarness, runChangeCaptureConformance } from 'stockcast/conformance'
import { type AnyModel, ccModels, sequelizeCache, testDb, toAttributes } from './helpers.js'
import { DIALECTS, type Dialect, describeService, downOf, labelOf } from './services.js'

/**
 * Writes through Sequelize models only. `instance`: create, instance.update, instance.destroy (instance hooks);
 * `bulk`: create, Model.update / Model.destroy with a where (bulk hooks, products looked up from the where).
 */
function writer(
  models: Record<string, AnyModel>,
  style: 'instance' | 'bulk',
  transaction?: Transaction,
): CaptureWriter {
  const model = (table: string) => {
    const m = models[table]
    if (m === undefined) throw new Error(`no model for ${table}`)
    return m
  }
  return {
    async insert(table, row) {
      const m = model(table)
      const created = await m.create(toAttributes(m, row), { transaction })
      return Number(created.get('id'))
    },
    async update(table, id, patch) {
      const m = model(table)
      if (style === 'bulk') await m.update(toAttributes(m, patch), { where: { id }, transaction })
      else {
        const row = await m.findByPk(id, { transaction })
        await row!.update(toAttributes(m, patch), { transaction })
      }
    },
    async delete(table, id) {
      const m = model(table)
      if (style === 'bulk') await m.destroy({ where: { id }, transaction })
      else await (await m.findByPk(id, { transaction }))!.destroy({ transaction })
    },
  }
}

async function harness(
  dialect: Dialect,
  style: 'instance' | 'bulk',
  schema: StockSchema,
): Promise<ChangeCaptureHarness> {
  const t = await testDb(dialect)
  const models = await ccModels(t.sequelize)
  const { cache, detach } = sequelizeCache(t.sequelize, schema, { debounceMs: 5 })
  return {
    cache,
    ...writer(models, style),
    async transaction(fn) {
      await t.sequelize.transaction(async (tx) => fn(writer(models, style, tx)))
    },
    // Marks are applied when the write (or its commit) returns: nothing to wait for.
    settle: async () => {},
    async close() {
      detach()
      await cache.close()
      await t.close()
    },
  }
}

for (const dialect of DIALECTS) {
  describeService(downOf(dialect), `attachSequelize on ${labelOf(dialect)}`, () => {
    runChangeCaptureConformance((schema) => harness(dialect, 'instance', schema), {
      name: 'ChangeCapture conformance (instance writes)',
    })
    runChangeCaptureConformance((schema) => harness(dialect, 'bulk', schema), {
      name: 'ChangeCapture conformance (Model.update / Model.destroy with a where)',
    })
  })
}
