// The multi-process history checker on MariaDB/MySQL (test-support/history/README.md): 4 writer processes, 3 cache
// processes (2 polling one outbox), a control reader; a listening process SIGKILLed and replaced, connections
// killed; every read judged against the truth replayed from the commit history.
import { historySuite } from '../../../test-support/history/suite.js'
import { mysqlDown } from './services.js'

/** The violation assertions; STOCKCAST_HISTORY_ENFORCE=0 only prints them (the floors are asserted either way). */
const ENFORCE = process.env.STOCKCAST_HISTORY_ENFORCE !== '0'

historySuite('mysql', mysqlDown, 'MariaDB', { enforce: ENFORCE })
