import { expect, it } from 'vitest'
import { splitNamedParams } from '../src/named-params.js'

it('cuts a related query at its parameters, skipping literals, comments and casts', () => {
  const sql =
    "SELECT product_code FROM picking_items WHERE order_id = :id AND note <> ':no' AND x::text = :id -- :nope\nAND y = :other"
  const { parts, names } = splitNamedParams('postgres', sql)
  expect(names).toEqual(['id', 'id', 'other'])
  expect(parts).toEqual([
    'SELECT product_code FROM picking_items WHERE order_id = ',
    " AND note <> ':no' AND x::text = ",
    ' -- :nope\nAND y = ',
    '',
  ])
})
