// The service probes and describeService are shared by every adapter's tests (test-support/services.ts).

export { describeService, PG_URL, pgDown, uniquePrefix } from '../../../test-support/services.js'
