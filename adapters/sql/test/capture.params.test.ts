import { describe, expect, it } from 'vitest'
import { rewriteNamedParams, scanSql } from '../src/capture/related.js'

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

describe('scanSql: code and literal segments', () => {
  const segments = (dialect: 'postgres' | 'mysql', sql: string) => {
    const out: Array<[string, boolean]> = []
    let at = 0
    scanSql(dialect, sql, (start, end, code) => {
      expect(start).toBe(at) // consecutive, covering the whole text
      at = end
      out.push([sql.slice(start, end), code])
    })
    expect(at).toBe(sql.length)
    return out
  }

  it('PostgreSQL: strings (E-escapes), identifiers, comments (nested), dollar quotes; code between them whole', () => {
    expect(
      segments(
        'postgres',
        `SELECT a$1, 'x''y' || E'\\'z' FROM "t""q" -- c\nWHERE /* a /* b */ c */ b = $t$ $1 $t$ AND c = $2`,
      ),
    ).toEqual([
      ['SELECT a$1, ', true],
      ["'x''y'", false],
      [' || E', true],
      ["'\\'z'", false],
      [' FROM ', true],
      ['"t""q"', false],
      [' ', true],
      ['-- c\n', false],
      ['WHERE ', true],
      ['/* a /* b */ c */', false],
      [' b = ', true],
      ['$t$ $1 $t$', false],
      [' AND c = $2', true],
    ])
  })

  it('MySQL: backslash strings, double-quoted strings, backticks, # comments; block comments do not nest', () => {
    expect(segments('mysql', "SELECT 'a\\'b', \"c\", `d` # e\nFROM t /* f /* g */ WHERE $x")).toEqual([
      ['SELECT ', true],
      ["'a\\'b'", false],
      [', ', true],
      ['"c"', false],
      [', ', true],
      ['`d`', false],
      [' ', true],
      ['# e\n', false],
      ['FROM t ', true],
      ['/* f /* g */', false],
      [' WHERE $x', true],
    ])
  })
})
