// The HTTP API: the original system's endpoints over the stock cache, plus writes through Sequelize.
import express from 'express'

const summary = (p) => ({
  product: p.product,
  today: p.today,
  stockToday: p.stockToday,
  minClosing7d: p.minClosing7d,
  firstStockoutDate: p.firstStockoutDate,
  status: p.status,
  stale: p.stale,
})

const PRODUCT = /^[A-Za-z0-9._-]{1,64}$/
const DAY = /^\d{4}-\d{2}-\d{2}$/

export function createApp({ sequelize, cache, models }) {
  const app = express()
  app.use(express.json())

  const product = (req) => {
    const p = req.params.product
    if (!PRODUCT.test(p)) throw Object.assign(new Error(`bad product id ${JSON.stringify(p)}`), { status: 400 })
    return p
  }

  // Stock today (on hand).
  app.get('/stock/:product', async (req, res) => {
    const p = await cache.get(product(req))
    res.json({ product: p.product, stockToday: p.stockToday, status: p.status, stale: p.stale })
  })

  // D0..D28: opening, supply, demand, closing per day; 7-day minimum, stock-out day, status.
  app.get('/projection/:product', async (req, res) => {
    const p = await cache.get(product(req))
    res.json({
      ...summary(p),
      days: p.days.map((d) => ({ date: d.date, supply: d.supply, demand: d.demand, closing: d.closing })),
    })
  })

  // Recompute from the tables now, whatever is cached.
  app.post('/refresh/:product', async (req, res) => {
    res.json(summary(await cache.refresh(product(req))))
  })

  app.get('/cache/status', (_req, res) => {
    const m = cache.metrics()
    res.json({
      ...cache.status(),
      metrics: { l1Hits: m.l1Hits, l2Hits: m.l2Hits, recomputes: m.recomputes, marks: m.marks, reads: m.reads },
    })
  })

  // An order with its lines, in one Sequelize transaction: the hooks mark the products after the commit.
  app.post('/orders', async (req, res) => {
    const lines = req.body?.lines
    if (!Array.isArray(lines) || lines.length === 0) {
      return res.status(400).json({ error: 'body must be { lines: [{ product, quantity, shipDate }] }' })
    }
    for (const l of lines) {
      if (!PRODUCT.test(String(l?.product)) || !(Number(l?.quantity) > 0) || !DAY.test(String(l?.shipDate))) {
        return res.status(400).json({ error: `bad line ${JSON.stringify(l)}` })
      }
    }
    const order = await sequelize.transaction(async (transaction) => {
      const o = await models.Order.create({ status: 'OPEN' }, { transaction })
      await models.OrderLine.bulkCreate(
        lines.map((l) => ({ orderId: o.id, productCode: l.product, openQty: l.quantity, shipDate: l.shipDate })),
        { transaction },
      )
      return o
    })
    res.status(201).json({ orderId: Number(order.id), lines: lines.length })
  })

  // A stock movement (receipt or issue).
  app.post('/movements', async (req, res) => {
    const { product: p, quantity } = req.body ?? {}
    if (!PRODUCT.test(String(p)) || !Number.isFinite(Number(quantity))) {
      return res.status(400).json({ error: 'body must be { product, quantity }' })
    }
    const m = await models.StockMovement.create({ productCode: p, quantity })
    res.status(201).json({ id: Number(m.id) })
  })

  app.use((err, _req, res, _next) => {
    res.status(err.status ?? 500).json({ error: err.message })
  })
  return app
}
