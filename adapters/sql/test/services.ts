// The service probes and describeService are shared by every adapter's tests (test-support/services.ts).
import mysql from 'mysql2/promise'
import pg from 'pg'
import { MYSQL_URL, PG_URL } from '../../../test-support/services.js'

export { describeService, MYSQL_URL, mysqlDown, PG_URL, pgDown, uniquePrefix } from '../../../test-support/services.js'

/** A pg Pool on the test database. */
export function pgPool(max = 10): pg.Pool {
  return new pg.Pool({ connectionString: PG_URL, max })
}

/** A mysql2 pool on the test database (DECIMAL as strings: exact). */
export function mysqlPool(connectionLimit = 10): mysql.Pool {
  return mysql.createPool({
    uri: MYSQL_URL,
    connectionLimit,
    decimalNumbers: false,
    dateStrings: true,
    multipleStatements: false,
  })
}
