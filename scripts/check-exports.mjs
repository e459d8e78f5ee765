// Checks that the package's public surface agrees with itself:
// - every path in package.json "exports" exists in dist/;
// - the ESM and CommonJS builds export the same names;
// - every value src/index.ts names is really exported by the build (nothing silently dropped).
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const problems = []

const paths = []
const walk = (v) => {
  if (typeof v === 'string') paths.push(v)
  else if (v && typeof v === 'object') Object.values(v).forEach(walk)
}
walk(pkg.exports)
for (const p of paths)
  if (!existsSync(join(root, p))) problems.push(`exports map names ${p}, which the build did not produce`)

const require = createRequire(import.meta.url)
for (const [sub, entry] of Object.entries(pkg.exports)) {
  if (sub === './package.json') continue
  const esmPath = typeof entry.import === 'string' ? entry.import : entry.import.default
  const esm = await import(pathToFileURL(join(root, esmPath)).href)
  if (entry.require === undefined) continue // ESM-only subpath (conformance: vitest is ESM only)
  const cjs = require(join(root, entry.require.default))
  const a = Object.keys(esm).sort().join(',')
  const b = Object.keys(cjs).sort().join(',')
  if (a !== b) problems.push(`${sub}: ESM exports [${a}] but CommonJS exports [${b}]`)
}

// Value names listed in src/index.ts `export { ... } from` lines (types are erased and not checked here).
const index = readFileSync(join(root, 'src/index.ts'), 'utf8')
const named = [...index.matchAll(/^export \{([^}]*)\} from/gm)].flatMap((m) =>
  m[1]
    .split(',')
    .map((s) =>
      s
        .trim()
        .split(/\s+as\s+/)
        .pop(),
    )
    .filter(Boolean),
)
const built = await import(pathToFileURL(join(root, pkg.exports['.'].import.default)).href)
for (const n of named) if (!(n in built)) problems.push(`src/index.ts exports ${n}, the build does not`)

if (problems.length > 0) {
  console.error(problems.map((p) => `- ${p}`).join('\n'))
  process.exit(1)
}
console.log(
  `exports ok: ${Object.keys(pkg.exports).length} subpaths, ${named.length} named values, ESM and CommonJS agree`,
)
