import type { StockSchema } from 'stockcast'
import type { SqlDialect } from '../types.js'

const NAME_START = /[A-Za-z_]/
const NAME_PART = /[A-Za-z0-9_]/
const DOLLAR_TAG = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/

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
  const pg = dialect === 'postgres'
  const params: string[] = []
  let out = ''
  let i = 0
  const n = sql.length
  const copyUntil = (end: number) => {
    out += sql.slice(i, end)
    i = end
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
      copyUntil(Math.min(j + 1, n))
    } else if ((c === '"' && pg) || (c === '`' && !pg)) {
      let j = i + 1
      while (j < n) {
        if (sql[j] === c && sql[j + 1] === c) j += 2
        else if (sql[j] === c) break
        else j++
      }
      copyUntil(Math.min(j + 1, n))
    } else if ((c === '-' && next === '-') || (c === '#' && !pg)) {
      const j = sql.indexOf('\n', i)
      copyUntil(j < 0 ? n : j + 1)
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
      copyUntil(j)
    } else if (c === '$' && pg && !NAME_PART.test(sql[i - 1] ?? ' ')) {
      const m = DOLLAR_TAG.exec(sql.slice(i))
      if (m === null) {
        copyUntil(i + 1)
        continue
      }
      const end = sql.indexOf(m[0], i + m[0].length)
      copyUntil(end < 0 ? n : end + m[0].length)
    } else if (c === ':' && next === ':') {
      copyUntil(i + 2)
    } else if (c === ':' && next !== undefined && NAME_START.test(next) && sql[i - 1] !== ':') {
      let j = i + 2
      while (j < n && NAME_PART.test(sql[j]!)) j++
      const name = sql.slice(i + 1, j)
      if (!params.includes(name)) params.push(name)
      out += replace(name)
      i = j
    } else copyUntil(i + 1)
  }
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
