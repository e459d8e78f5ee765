// `stockcast/conformance`: the suites every adapter runs (vitest is an optional peer dependency).

export type { BusConformanceOptions, MakeBus } from './bus.js'
export { runBusConformance } from './bus.js'
export type { CaptureWriter, ChangeCaptureHarness, ChangeCaptureOptions } from './change-capture.js'
export { changeCaptureSchema, dayFromToday, runChangeCaptureConformance } from './change-capture.js'
export type { LockConformanceOptions, MakeLock } from './lock.js'
export { runLockConformance } from './lock.js'
export type { MakeStore, StoreConformanceOptions } from './store.js'
export { edgeProjections, runStoreConformance, sampleProjection } from './store.js'
