import { ConfigError, isSafeIdentifier } from 'stockcast'
import type { SqlDialect } from './types.js'

/**
 * Quote an identifier for the dialect: `"x"` (PostgreSQL) or `` `x` `` (MySQL/MariaDB); `schema.table` becomes
 * `"schema"."table"`. Only `[A-Za-z_][A-Za-z0-9_]*` parts are accepted (the schema's identifier rule), so the
 * quoted text can never close its quotes; anything else is a `ConfigError` naming `what`.
 */
export function quoteIdent(dialect: SqlDialect, name: string, what = 'identifier'): string {
  if (!isSafeIdentifier(name, true)) {
    throw new ConfigError(
      `${what} must be an identifier like "stock_movements" or "inventory.stock_movements" ([A-Za-z_][A-Za-z0-9_]*), got ${JSON.stringify(name)}`,
      { option: what },
    )
  }
  const q = dialect === 'postgres' ? '"' : '`'
  return name
    .split('.')
    .map((part) => q + part + q)
    .join('.')
}

/** The placeholder of the `i`-th parameter (1-based): `$i` for PostgreSQL, `?` for MySQL/MariaDB. */
export function placeholder(dialect: SqlDialect, i: number): string {
  return dialect === 'postgres' ? `$${i}` : '?'
}

/** `count` placeholders from `start` (1-based), comma-separated: `$3, $4` or `?, ?`. */
export function placeholders(dialect: SqlDialect, count: number, start = 1): string {
  const out: string[] = []
  for (let i = 0; i < count; i++) out.push(placeholder(dialect, start + i))
  return out.join(', ')
}

/** `[schema, table]` of a possibly qualified name (`schema` null when unqualified). */
export function splitQualified(name: string): [schema: string | null, table: string] {
  const i = name.indexOf('.')
  return i < 0 ? [null, name] : [name.slice(0, i), name.slice(i + 1)]
}
