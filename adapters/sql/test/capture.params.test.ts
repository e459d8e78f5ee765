import { describe, expect, it } from 'vitest'
import { rewriteNamedParams } from '../src/capture/related.js'

const pg = (sql: string) => rewriteNamedParams('postgres', sql, (n) => `<${n}>`)
const my = (sql: string) => rewriteNamedParams('mysql', sql, (n) => `<${n}>`)

describe('related query parameters (:name)', () => {
  it('replaces every use, lists names once in order of first use', () => {
    expect(pg('SELECT sku FROM p WHERE a = :a AND b = :b OR a2 = :a')).toEqual({
      sql: 'SELECT sku FROM p WHERE a = <a> AND b = <b> OR a2 = <a>',
      params: ['a', 'b'],
    })
  })

  it('PostgreSQL: skips casts, literals, quoted identifiers, comments and dollar quotes', () => {
    const sql = [
      "SELECT sku::text, 'it'':s :lit', E'\\':esc', \"col:x\" -- :comment",
      'FROM p /* :block /* :nested */ :still */ WHERE x = :x AND y = $q$ :dollar $q$ AND z = $1 AND w = :w::int',
    ].join('\n')
    const out = pg(sql)
    expect(out.params).toEqual(['x', 'w'])
    expect(out.sql).toContain('x = <x>')
    expect(out.sql).toContain('w = <w>::int')
    expect(out.sql).toContain("'it'':s :lit'")
    expect(out.sql).toContain('$q$ :dollar $q$')
  })

  it('MySQL: backslash escapes in strings, backtick identifiers, # comments', () => {
    const out = my("SELECT `a:b`, 'x\\':y', \"q:z\" # :c\nFROM t WHERE id = :id")
    expect(out.params).toEqual(['id'])
    expect(out.sql.endsWith('id = <id>')).toBe(true)
  })
})
