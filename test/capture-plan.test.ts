import { describe, expect, it } from 'vitest'
import { capturePlan, defineStockSchema } from '../src/index.js'

describe('capturePlan: what a written row of each declared table marks', () => {
  const schema = defineStockSchema({
    onHand: [
      { table: 'moves', product: 'sku', quantity: 'qty' },
      { table: 'moves', product: 'sku', quantity: 'qty2', id: 'moves-again' },
    ],
    supply: [{ table: 'po_lines', product: 'item', quantity: 'qty', date: 'due' }],
    demand: [
      { table: 'order_lines', product: 'sku', quantity: 'qty', date: 'day' },
      { table: 'order_lines', product: 'alt_sku', quantity: 'qty', date: 'day', id: 'alt' },
    ],
    related: [
      { table: 'orders', products: 'SELECT sku FROM order_lines WHERE order_id = :id' },
      { table: 'order_lines', products: 'SELECT sku FROM order_lines WHERE parent = :parent_id' },
      { table: 'orders', products: 'SELECT alt_sku FROM order_lines WHERE order_id = :id' },
    ],
  })
  const plan = capturePlan(schema)

  it('has one entry per declared table: source tables first, then related-only tables, in declaration order', () => {
    expect([...plan.keys()]).toEqual(['moves', 'po_lines', 'order_lines', 'orders'])
  })

  it.each([
    ['moves', [{ column: 'sku', sources: ['moves', 'moves-again'] }], []],
    ['po_lines', [{ column: 'item', sources: ['po_lines'] }], []],
    [
      'order_lines',
      [
        { column: 'sku', sources: ['order_lines'] },
        { column: 'alt_sku', sources: ['alt'] },
      ],
      [{ index: 1, products: 'SELECT sku FROM order_lines WHERE parent = :parent_id' }],
    ],
    [
      'orders',
      [],
      [
        { index: 0, products: 'SELECT sku FROM order_lines WHERE order_id = :id' },
        { index: 2, products: 'SELECT alt_sku FROM order_lines WHERE order_id = :id' },
      ],
    ],
  ])('%s: distinct product columns with their sources, and its related queries', (table, productColumns, related) => {
    const t = plan.get(table)!
    expect(t.table).toBe(table)
    expect(t.productColumns).toEqual(productColumns)
    expect(t.related).toEqual(related)
  })

  it('is computed once per schema and frozen', () => {
    expect(capturePlan(schema)).toBe(plan)
    const t = plan.get('order_lines')!
    expect(Object.isFrozen(t)).toBe(true)
    expect(Object.isFrozen(t.productColumns)).toBe(true)
    expect(Object.isFrozen(t.productColumns[0])).toBe(true)
    expect(Object.isFrozen(t.related)).toBe(true)
    expect(plan.get('nope')).toBeUndefined()
  })
})
