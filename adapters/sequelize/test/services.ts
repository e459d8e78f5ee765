// The service probes and describeService are shared by every adapter's tests (test-support/services.ts).
import { mysqlDown, pgDown } from '../../../test-support/services.js'

export { describeService, MYSQL_URL, mysqlDown, PG_URL, pgDown } from '../../../test-support/services.js'

/** The databases every test file loops over (filter with STOCKCAST_DIALECTS=postgres,mysql). */
export const DIALECTS = (['postgres', 'mysql'] as const).filter((d) =>
  (process.env.STOCKCAST_DIALECTS ?? 'postgres,mysql').split(',').includes(d),
)
export type Dialect = (typeof DIALECTS)[number]

export const downOf = (d: Dialect) => (d === 'postgres' ? pgDown : mysqlDown)
export const labelOf = (d: Dialect) => (d === 'postgres' ? 'PostgreSQL' : 'MariaDB')

/** A unique, valid identifier per test run (schemas and databases of parallel runs never collide). */
export function uniqueName(base: string): string {
  return `${base}_${process.pid}_${Math.floor(Math.random() * 1e6)}`.toLowerCase()
}
