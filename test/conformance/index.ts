// `stockcast/conformance`: the suites every adapter runs (vitest is an optional peer dependency).

export type { CaptureWriter, ChangeCaptureHarness, ChangeCaptureOptions } from './change-capture.js'
export { changeCaptureSchema, dayFromToday, runChangeCaptureConformance } from './change-capture.js'
export type { MakeStore, StoreConformanceOptions } from './store.js'
export { runStoreConformance, sampleProjection } from './store.js'
