import { rewriteNamedParams, type SqlDialect } from '@stockcast/sql'

/**
 * A `related` products query cut at its `:name` parameters, for `$queryRaw(parts, ...values)`: Prisma then writes
 * the placeholders of its own provider and binds every value. `names[i]` is the parameter between `parts[i]` and
 * `parts[i + 1]` (a name used twice appears twice). The scan is the SQL adapter's (`rewriteNamedParams`: string
 * literals, quoted identifiers, comments, dollar quotes and `::` casts are skipped), so triggers and this extension
 * read a declaration the same way.
 */
export function splitNamedParams(dialect: SqlDialect, sql: string): { parts: string[]; names: string[] } {
  const names: string[] = []
  // NUL never appears in SQL text (PostgreSQL and MySQL reject it), so it can stand for each parameter.
  const rewritten = rewriteNamedParams(dialect, sql, (name) => {
    names.push(name)
    return '\u0000'
  })
  return { parts: rewritten.sql.split('\u0000'), names }
}
