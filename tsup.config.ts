import { defineConfig } from 'tsup'

// `stockcast/conformance` imports vitest, which is ESM only: that entry has no CommonJS build.
const entry = { index: 'src/index.ts', conformance: 'test/conformance/index.ts' }

export default defineConfig([
  {
    entry,
    format: ['esm'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    external: ['vitest'],
  },
  {
    entry: { index: entry.index },
    format: ['cjs'],
    dts: true,
    sourcemap: true,
    target: 'node20',
    external: ['vitest'],
    // p-debounce ships ESM only; the CommonJS build carries its own copy so `require('stockcast')` works on every Node 20.
    noExternal: ['p-debounce'],
  },
  {
    entry: { cli: 'src/cli/index.ts' },
    format: ['esm'],
    sourcemap: true,
    target: 'node20',
    banner: { js: '#!/usr/bin/env node' },
    // An optional dependency: loaded at run time when installed (plain progress lines otherwise), never bundled.
    external: ['cli-progress'],
  },
])
