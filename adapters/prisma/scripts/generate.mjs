#!/usr/bin/env node
// `prisma generate`, offline too. Usage: node scripts/generate.mjs [schema.prisma ...]
// (default: this package's test schema, test/prisma/schema.prisma).
//
// Prisma 7's CLI fetches its schema engine before any command, even `generate`, which never runs it: without network
// access that fetch fails. Pointing PRISMA_SCHEMA_ENGINE_BINARY at an existing file skips the fetch. The file used
// here is a stub that fails loudly if anything ever tries to run it. With network access this is plain
// `prisma generate`.
import { spawnSync } from 'node:child_process'
import { chmodSync, existsSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const require = createRequire(import.meta.url)
const schemas = process.argv.slice(2)
if (schemas.length === 0) schemas.push(join(here, '..', 'test', 'prisma', 'schema.prisma'))

const env = { ...process.env, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1' }
if (!env.PRISMA_SCHEMA_ENGINE_BINARY) {
  const stub = join(tmpdir(), 'stockcast-prisma-schema-engine-stub')
  if (!existsSync(stub)) {
    writeFileSync(
      stub,
      '#!/bin/sh\necho "stockcast: this is a stub schema engine (offline prisma generate); migrate/db push need the real one" >&2\nexit 1\n',
    )
    chmodSync(stub, 0o755)
  }
  env.PRISMA_SCHEMA_ENGINE_BINARY = stub
}

const cli = require.resolve('prisma/build/index.js')
for (const schema of schemas) {
  const path = resolve(schema)
  const r = spawnSync(process.execPath, [cli, 'generate', '--schema', path], { env, encoding: 'utf8' })
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr)
    console.error(`prisma generate failed for ${path} (exit ${r.status ?? r.signal})`)
    process.exit(1)
  }
  const generated = r.stdout.split('\n').filter((l) => l.includes('Generated Prisma Client'))
  console.log(`prisma generate ${path}\n${generated.map((l) => `  ${l.replace(/^\W+/, '')}`).join('\n')}`)
}
