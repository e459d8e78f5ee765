import type { StockSchema } from 'stockcast'
import type { SqlDialect } from '../types.js'

const NAME_START = /[A-Za-z_]/
const NAME_PART = /[A-Za-z0-9_]/
const DOLLAR_TAG = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/

/**
 * Cut SQL text into consecutive segments: `code`, or not (string literals, quoted identifiers, comments, and on
 * PostgreSQL dollar-quoted bodies; MySQL: backtick identifiers and `#` comments). `visit(start, end, code)` is called
 * for each, in order, covering the whole text; a code segment runs until the next non-code one starts. PostgreSQL
 * block comments nest and `E'...'` strings take backslash escapes; MySQL strings always do. For adapters that must
 * treat code and literals differently (`rewriteNamedParams`; `@stockcast/sequelize` encoding `$` for its binder).
 */
export function scanSql(
  dialect: SqlDialect,
  sql: string,
  visit: (start: number, end: number, code: boolean) => void,
): void {
  const pg = dialect === 'postgres'
  const n = sql.length
  let i = 0
  let codeStart = 0
  const literal = (end: number) => {
    if (codeStart < i) visit(codeStart, i, true)
    visit(i, end, false)
    i = end
    codeStart = end
  }
  while (i < n) {
    const c = sql[i]!
    const next = sql[i + 1]
    if (c === "'" || (c === '"' && !pg)) {
      // A string: '' doubles the quote; backslash escapes in MySQL and in PostgreSQL E'...' strings.
      const prev = sql[i - 1]
      const backslash = !pg || ((prev === 'E' || prev === 'e') && !NAME_PART.test(sql[i - 2] ?? ' '))
      let j = i + 1
      while (j < n) {
        if (backslash && sql[j] === '\\') j += 2
        else if (sql[j] === c && sql[j + 1] === c) j += 2
        else if (sql[j] === c) break
        else j++
      }
      literal(Math.min(j + 1, n))
    } else if ((c === '"' && pg) || (c === '`' && !pg)) {
      let j = i + 1
      while (j < n) {
        if (sql[j] === c && sql[j + 1] === c) j += 2
        else if (sql[j] === c) break
        else j++
      }
      literal(Math.min(j + 1, n))
    } else if ((c === '-' && next === '-') || (c === '#' && !pg)) {
      const j = sql.indexOf('\n', i)
      literal(j < 0 ? n : j + 1)
    } else if (c === '/' && next === '*') {
      // PostgreSQL block comments nest; MySQL's do not.
      let depth = 1
      let j = i + 2
      while (j < n && depth > 0) {
        if (pg && sql[j] === '/' && sql[j + 1] === '*') {
          depth++
          j += 2
        } else if (sql[j] === '*' && sql[j + 1] === '/') {
          depth--
          j += 2
        } else j++
      }
      literal(j)
    } else if (c === '$' && pg && !NAME_PART.test(sql[i - 1] ?? ' ') && DOLLAR_TAG.test(sql.slice(i, i + 66))) {
      const tag = DOLLAR_TAG.exec(sql.slice(i, i + 66))![0]
      const end = sql.indexOf(tag, i + tag.length)
      literal(end < 0 ? n : end + tag.length)
    } else i++
  }
  if (codeStart < n) visit(codeStart, n, true)
}

/**
 * Replace the `:name` parameters of a `related` products query, skipping string literals, quoted identifiers,
 * comments, dollar-quoted bodies and `::` casts (PostgreSQL), or backtick identifiers and `#` comments (MySQL).
 * `replace(name)` returns the SQL that stands for the parameter (a column reference of the changed rows).
 * Returns the rewritten text and the parameter names in order of first use.
 */
export function rewriteNamedParams(
  dialect: SqlDialect,
  sql: string,
  replace: (name: string) => string,
): { sql: string; params: string[] } {
  const params: string[] = []
  let out = ''
  scanSql(dialect, sql, (start, end, code) => {
    if (!code) {
      out += sql.slice(start, end)
      return
    }
    let i = start
    while (i < end) {
      const c = sql[i]!
      const next = i + 1 < end ? sql[i + 1] : undefined
      if (c === ':' && next === ':') {
        out += '::'
        i += 2
      } else if (c === ':' && next !== undefined && NAME_START.test(next) && sql[i - 1] !== ':') {
        let j = i + 2
        while (j < end && NAME_PART.test(sql[j]!)) j++
        const name = sql.slice(i + 1, j)
        if (!params.includes(name)) params.push(name)
        out += replace(name)
        i = j
      } else {
        out += c
        i++
      }
    }
  })
  return { sql: out, params }
}

/** Every table a schema names (sources and related), with who names it (for install and verify messages). */
export function tablesNamed(schema: StockSchema): Map<string, string[]> {
  const out = new Map<string, string[]>()
  const add = (t: string, by: string): void => {
    out.set(t, [...(out.get(t) ?? []), by])
  }
  for (const s of schema.sources) add(s.table, `${s.kind} source "${s.id}"`)
  for (const [i, r] of schema.related.entries()) add(r.table, `related[${i}]`)
  return out
}
