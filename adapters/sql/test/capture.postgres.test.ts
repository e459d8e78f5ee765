import { runChangeCaptureConformance } from 'stockcast/conformance'
import { captureHarness, pgTestDb } from './capture-helpers.js'
import { describeService, pgDown } from './services.js'

// Writes are plain SQL through the pool: the triggers capture any writer, the listener drains the outbox.
describeService(pgDown, 'sqlChangeCapture on PostgreSQL (pg Pool)', () => {
  runChangeCaptureConformance((schema) => captureHarness(() => pgTestDb(), schema), {
    name: 'ChangeCapture conformance',
  })
})
