import { memoryStore, type StoreEntry } from '../src/index.js'
import { runStoreConformance } from './conformance/index.js'

const shared = new Map<string, StoreEntry>()
runStoreConformance(({ prefix }) => memoryStore({ prefix, map: shared }), {
  name: 'memoryStore conformance',
  shared: true,
})
