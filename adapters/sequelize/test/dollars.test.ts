import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { protectDollars } from '../src/connection.js'

// Sequelize's own bind rewrite (what sequelize.query does to PostgreSQL text when `bind` is given).
const require = createRequire(import.meta.url)
const AbstractQuery = require('sequelize/lib/dialects/abstract/query') as {
  formatBindParameters(sql: string, values: unknown[], dialect: string, options: object): [string, unknown[]]
}
const sequelizeRewrite = (sql: string, params: number) =>
  AbstractQuery.formatBindParameters(
    sql,
    Array.from({ length: params }, (_, i) => i),
    'postgres',
    { skipValueReplace: true },
  )[0]

describe('protectDollars (PostgreSQL text through Sequelize bind)', () => {
  const cases: Array<[string, number]> = [
    ['SELECT $1', 1],
    ['SELECT $$a$$ AS x, $1', 1],
    ["SELECT $t$ $1 $$ $t$ AS x, '$2' AS y, $1::int", 1],
    ['SELECT a$b, $1, "x$$y", $2 -- $9 $$\n', 2],
    ["SELECT E'\\'$3', $1", 1],
    ['SELECT $a$x$a$', 0],
    ['SELECT $$', 0],
    ['SELECT 1 /* $$ $5 /* $x */ */ + $1', 1],
    ['SELECT x$$1', 0],
    ['SELECT $1, $10, $2', 10],
    ["CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT '$1'::text $body$", 0],
  ]
  for (const [sql, params] of cases) {
    it(`comes back unchanged: ${JSON.stringify(sql)}`, () => {
      expect(sequelizeRewrite(protectDollars(sql), params)).toBe(sql)
    })
  }

  it('leaves text without a dollar alone', () => {
    const sql = 'SELECT 1'
    expect(protectDollars(sql)).toBe(sql)
  })
})
