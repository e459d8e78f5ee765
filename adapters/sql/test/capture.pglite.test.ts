import { runChangeCaptureConformance } from 'stockcast/conformance'
import { describe } from 'vitest'
import { captureHarness, pgliteTestDb } from './capture-helpers.js'

// PGlite is one session: the listener reads, recomputes and deletes without holding a transaction open.
describe('sqlChangeCapture on PGlite', () => {
  runChangeCaptureConformance((schema) => captureHarness(() => pgliteTestDb(), schema), {
    name: 'ChangeCapture conformance',
  })
})
