// `npm run build`: what the image runs. esbuild bundles src/cli.ts (every role) into dist/cli.js
// plus chunks split along the roles' dynamic imports, so a sidecar loads the proxy's code and never
// the control plane's (@kubernetes/client-node) nor the tracing SDK until tracing is on. Packages
// that cannot be bundled stay external and are shipped as installed (EXTERNALS).
//
//   node scripts/bundle.ts                  dist/ of this checkout (runs with its node_modules)
//   node scripts/bundle.ts --layer DIR      the image's /opt/remora: DIR/package.json, DIR/dist/,
//                                           DIR/node_modules/ holding the externals only
//
// See docs/image.md.
import { build, type Metafile, type Plugin } from 'esbuild'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { isBuiltin } from 'node:module'
import { dirname, join, relative, sep } from 'node:path'

export const ROOT = new URL('..', import.meta.url).pathname

/**
 * Left out of the bundle and copied into node_modules/ with what they depend on:
 * - koffi: a native addon; its prebuilt binary comes in @koromix/koffi-<os>-<arch>, an optional
 *   dependency npm installs for the platform it runs on (the build stage's, i.e. the image's).
 * - undici: src/http/origin-http1.ts requires undici's dispatcher modules by path through
 *   createRequire (the sidecar skips undici's entry point, ~17 MB of RSS), which a bundler cannot see.
 */
export const EXTERNALS = ['koffi', 'undici'] as const

/**
 * V8 flags the image starts every role with (the Dockerfile's ENTRYPOINT; the bench runs sidecars
 * with them too). --max-semi-space-size=8: under load V8 grew the young generation to 128 MB, most
 * of a sidecar's RSS; capped at 8 MB, RSS at 1,000 req/s fell from ~250 to ~180 MB and p99 through
 * two hops halved, with no loss of peak throughput (docs/performance.md). 2 MB cost 14-24 % of it.
 * --expose-gc: a quiet sidecar gives memory back with one memory-reducing GC (src/proxy/idle-compaction.ts):
 * ~10 MB after start-up, ~20 MB after a burst.
 */
export const IMAGE_NODE_FLAGS = ['--max-semi-space-size=8', '--expose-gc'] as const

/**
 * Packages required inside a try/catch by the package that requires them, which goes on without:
 * left out of the bundle (a production install does not have them either) and not shipped.
 */
export const OPTIONAL_REQUIRES: Readonly<Record<string, string>> = {
  bufferutil: 'ws: native masking; falls back to JavaScript',
  'utf-8-validate': 'ws: native UTF-8 check; falls back to JavaScript',
  'supports-color': 'debug: terminal colours; only dev dependencies install it',
}

const REQUIRE_BANNER = "import { createRequire as __remoraCreateRequire } from 'node:module'; const require = __remoraCreateRequire(import.meta.url);"

export interface BundleOptions {
  /** Where dist/ goes: this checkout (default) or a layer folder. */
  out?: string
  /** The checkout whose src/ is bundled (default this one; the bench's --rev gives another, node_modules linked in). */
  root?: string
  /** Also write package.json and node_modules/ (the externals) into `out`: the image's /opt/remora. */
  layer?: boolean
}

export interface RoleSize { role: string, entry: string, files: number, bytes: number, withLazy: number }

export interface BundleResult {
  out: string
  /** Every file written under out/dist, with its size. */
  files: Array<{ path: string, bytes: number }>
  /** The packages inside the bundle (name@version), from esbuild's metafile. */
  bundled: Array<{ name: string, version: string, license: string, dir: string }>
  /** The external packages copied into out/node_modules (layer only). */
  copied: string[]
  roles: RoleSize[]
  metafile: Metafile
}

/** The roles' modules, which cli.ts imports dynamically: each is a chunk of its own. */
export const ROLE_ENTRIES: Readonly<Record<string, string>> = {
  proxy: 'src/proxy/main.ts',
  control: 'src/control/main.ts',
  init: 'src/init/main.ts',
  inject: 'src/inject/main.ts',
}

export async function bundle (options: BundleOptions = {}): Promise<BundleResult> {
  const out = options.out ?? ROOT
  if (options.layer === true && out === ROOT) throw new Error('a layer goes into a folder of its own, not the checkout')
  const dist = join(out, 'dist')
  rmSync(dist, { recursive: true, force: true })
  const result = await build({
    absWorkingDir: options.root ?? ROOT,
    // Named, so that a build context without it fails instead of compiling with other settings.
    tsconfig: 'tsconfig.json',
    entryPoints: { cli: 'src/cli.ts' },
    outdir: dist,
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    external: [...EXTERNALS, ...Object.keys(OPTIONAL_REQUIRES)],
    // Names kept (stack traces and logs read as in the sources); blanks and syntax squeezed: ~8 MB instead of ~20 MB.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    // The bundled CommonJS (pino, yaml, client-node, …) requires Node's builtins: esbuild's shim
    // calls the `require` in scope, which an ES module must make for itself.
    banner: { js: REQUIRE_BANNER },
    metafile: true,
    logLevel: 'silent',
    plugins: [rolldownRequires, httpAsCommonJs],
  })
  for (const w of result.warnings) process.stderr.write(`bundle: warning: ${w.text}${w.location === null ? '' : ` (${w.location.file}:${w.location.line})`}\n`)
  const unresolved = [...externalImports(result.metafile), ...runtimeRequires(dist)].filter((r) => !allowedAtRunTime(r.specifier))
  if (unresolved.length > 0) {
    throw new Error(`the bundle loads at run time what the image does not ship:\n${unresolved.map((r) => `  ${r.specifier} (${r.file})`).join('\n')}\nbundle it, or add it to EXTERNALS in scripts/bundle.ts`)
  }
  const bundled = bundledPackages(result.metafile)
  const devOnly = devOnlyPackages(bundled.map((p) => p.dir))
  if (devOnly.length > 0) throw new Error(`the bundle holds packages that only dev dependencies bring (package-lock.json): ${devOnly.join(', ')}; the image takes production dependencies only: make them dependencies, or do not import them from src/`)
  writeFileSync(join(dist, 'THIRD-PARTY-LICENSES.txt'), licenseText(bundled))
  writeFileSync(join(dist, 'bundled-packages.json'), JSON.stringify(bundled.map(({ name, version, license }) => ({ name, version, license })), null, 1) + '\n')
  let copied: string[] = []
  if (options.layer === true) {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string, version: string, description?: string, license?: string, engines?: unknown }
    writeFileSync(join(out, 'package.json'), JSON.stringify({ name: pkg.name, version: pkg.version, description: pkg.description, license: pkg.license, private: true, type: 'module', engines: pkg.engines }, null, 2) + '\n')
    copied = copyExternals(join(out, 'node_modules'))
    const devCopied = devOnlyPackages(copied.map((c) => `node_modules/${c}`))
    if (devCopied.length > 0) throw new Error(`external packages that only dev dependencies bring: ${devCopied.join(', ')}`)
  }
  return { out, files: listFiles(dist), bundled, copied, roles: roleSizes(result.metafile), metafile: result.metafile }
}

/** Is this specifier, required or imported by the bundle at run time, shipped (or a builtin)? */
export function allowedAtRunTime (specifier: string): boolean {
  if (isBuiltin(specifier)) return true
  if (specifier in OPTIONAL_REQUIRES) return true
  return EXTERNALS.some((e) => specifier === e || specifier.startsWith(`${e}/`))
}

/**
 * `import … from 'node:http'` in an ES module builds the module's namespace from every export, and
 * three of node:http's are getters (WebSocket, CloseEvent, MessageEvent) that load Node's internal
 * copy of undici: ~10 MB of RSS in a bare process, 2.5 MB of an idle sidecar's, for code it never runs. ES imports of node:http
 * get this module instead, which takes node:http with require() and re-exports what src/ uses (a
 * name missing here fails the build).
 */
const NODE_HTTP = 'remora:node-http'
const httpAsCommonJs: Plugin = {
  name: 'http-as-commonjs',
  setup (b) {
    b.onResolve({ filter: /^(node:)?http$/ }, (args) => args.kind === 'import-statement' || args.kind === 'dynamic-import' ? { path: NODE_HTTP, namespace: NODE_HTTP } : undefined)
    b.onLoad({ filter: /.*/, namespace: NODE_HTTP }, () => ({
      loader: 'js',
      resolveDir: ROOT,
      contents: "const http = require('node:http')\nexport default http\nexport const { Agent, ClientRequest, IncomingMessage, METHODS, OutgoingMessage, STATUS_CODES, Server, ServerResponse, createServer, get, request, validateHeaderName, validateHeaderValue } = http\n",
    }))
  },
}

/**
 * Packages built by rolldown (@opentelemetry/*'s .mjs) call `__require("x")`, their runtime's
 * createRequire(import.meta.url): a call esbuild does not follow, so "x" would be looked for in
 * node_modules at run time (the OTLP gRPC exporter's @grpc/grpc-js). Made plain require() calls,
 * esbuild bundles them like any other.
 */
const rolldownRequires: Plugin = {
  name: 'rolldown-requires',
  setup (b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/].*\.mjs$/ }, (args) => {
      const code = readFileSync(args.path, 'utf8')
      if (!/^import \{[^}]*\b__require\b[^}]*\} from "[^"]*_rolldown\/runtime\.mjs";$/m.test(code)) return undefined
      return { contents: code.replace(/(?<![\w$.])__require\(/g, 'require('), loader: 'js' }
    })
  },
}

/** The imports esbuild left external (static and dynamic), with the output that makes them. */
function externalImports (metafile: Metafile): Array<{ specifier: string, file: string }> {
  return Object.entries(metafile.outputs).flatMap(([file, o]) => o.imports.filter((i) => i.external === true).map((i) => ({ specifier: i.path, file: relative(ROOT, join(ROOT, file)) })))
}

/**
 * What the bundle's code requires by name at run time, where esbuild cannot see it: string
 * literals given to require() (esbuild's renamed requires too) or to createRequire(…)(…). A call
 * written inside a string (ajv's code generation) is not one.
 */
export function requiredIn (code: string): string[] {
  const found = new Set<string>()
  const patterns = [
    /(?<![\w$.'"`])(?:__)?require\d*\(\s*(["'`])([^"'`]+)\1\s*\)/g,
    /createRequire\)?\([^()]*\)\(\s*(["'`])([^"'`]+)\1\s*\)/g,
  ]
  for (const re of patterns) for (const m of code.matchAll(re)) found.add(m[2])
  return [...found].filter((s) => !s.startsWith('./') && !s.startsWith('../'))
}

function runtimeRequires (dist: string): Array<{ specifier: string, file: string }> {
  return listFiles(dist).filter((f) => f.path.endsWith('.js')).flatMap((f) =>
    requiredIn(readFileSync(join(dist, f.path), 'utf8')).map((specifier) => ({ specifier, file: `dist/${f.path}` })))
}

function listFiles (dir: string, prefix = ''): Array<{ path: string, bytes: number }> {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) => {
    const path = prefix === '' ? e.name : `${prefix}/${e.name}`
    return e.isDirectory() ? listFiles(dir, path) : [{ path, bytes: statSync(join(dir, path)).size }]
  }).sort((a, b) => a.path.localeCompare(b.path))
}

/** node_modules/<name> (or node_modules/@scope/name) holding an input path, innermost. */
function packageDirOf (input: string): string | undefined {
  const parts = input.split('/')
  const at = parts.lastIndexOf('node_modules')
  if (at < 0) return undefined
  const n = parts[at + 1]?.startsWith('@') === true ? 2 : 1
  return parts.slice(0, at + 1 + n).join('/')
}

function bundledPackages (metafile: Metafile): BundleResult['bundled'] {
  const dirs = new Set<string>()
  for (const input of Object.keys(metafile.inputs)) {
    const dir = packageDirOf(input)
    if (dir !== undefined) dirs.add(dir)
  }
  return [...dirs].map((dir) => {
    const pkg = JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')) as { name: string, version: string, license?: string | { type?: string } }
    const license = typeof pkg.license === 'string' ? pkg.license : pkg.license?.type ?? 'UNKNOWN'
    return { name: pkg.name, version: pkg.version, license, dir }
  }).sort((a, b) => a.name.localeCompare(b.name) || a.version.localeCompare(b.version))
}

/** Those of these node_modules/… folders that package-lock.json marks as needed by dev dependencies only. */
export function devOnlyPackages (dirs: readonly string[]): string[] {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> }
  return dirs.filter((d) => lock.packages[d]?.dev === true)
}

function licenseText (bundled: BundleResult['bundled']): string {
  const parts = [`The packages bundled into dist/ (${bundled.length}), with their licenses. The external ones in node_modules/ carry their own.\n`]
  for (const p of bundled) {
    const file = readdirSync(join(ROOT, p.dir)).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f))
    const text = file === undefined ? `(no license file in the package; package.json says: ${p.license})` : readFileSync(join(ROOT, p.dir, file), 'utf8').trim()
    parts.push(`${'='.repeat(78)}\n${p.name}@${p.version} (${p.license})\n${'-'.repeat(78)}\n${text}\n`)
  }
  return parts.join('\n')
}

/**
 * Copies the externals, and what they depend on (optional dependencies only where installed, i.e.
 * the platform's prebuilt binaries), from this checkout's node_modules, resolving as Node does.
 */
function copyExternals (target: string): string[] {
  const copied = new Set<string>()
  const visit = (name: string, from: string, optional: boolean): void => {
    let dir = from
    while (!existsSync(join(dir, 'node_modules', name, 'package.json'))) {
      if (dir === ROOT || dirname(dir) === dir) {
        if (optional) return // not for this platform
        throw new Error(`${name}, which ${relative(ROOT, from)} depends on, is not installed: npm ci first`)
      }
      dir = dirname(dir)
    }
    const src = join(dir, 'node_modules', name)
    const rel = relative(ROOT, src)
    if (copied.has(rel)) return
    copied.add(rel)
    cpSync(src, join(target, relative(join(ROOT, 'node_modules'), src)), { recursive: true, dereference: true })
    const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>, optionalDependencies?: Record<string, string> }
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, src, false)
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, src, true)
  }
  mkdirSync(target, { recursive: true })
  for (const name of EXTERNALS) visit(name, ROOT, false)
  return [...copied].map((p) => p.split(sep).join('/').replace(/^node_modules\//, '')).sort()
}

/**
 * What each role loads from dist/: the chunk of its module and what it imports statically
 * (`bytes`), and with what it may import later (`withLazy`: the tracing SDK when OTLP is on,
 * Kubernetes when it is the source). cli.js and its own imports come on top, for every role.
 */
function roleSizes (metafile: Metafile): RoleSize[] {
  const outputs = metafile.outputs
  const closure = (start: string, lazy: boolean): Set<string> => {
    const seen = new Set<string>()
    const walk = (o: string): void => {
      if (seen.has(o) || outputs[o] === undefined) return
      seen.add(o)
      for (const i of outputs[o].imports) if (i.external !== true && (i.kind === 'import-statement' || (lazy && i.kind === 'dynamic-import'))) walk(i.path)
    }
    walk(start)
    return seen
  }
  const sum = (set: Set<string>): number => [...set].reduce((s, o) => s + outputs[o].bytes, 0)
  const cli = Object.keys(outputs).find((o) => outputs[o].entryPoint === 'src/cli.ts') as string
  const base = closure(cli, false)
  return Object.entries({ cli: 'src/cli.ts', ...ROLE_ENTRIES }).flatMap(([role, entry]) => {
    const start = Object.keys(outputs).find((o) => outputs[o].entryPoint === entry)
    if (start === undefined) return []
    const now = new Set([...base, ...closure(start, false)])
    const later = new Set([...base, ...closure(start, true)])
    return [{ role, entry, files: now.size, bytes: sum(now), withLazy: sum(later) }]
  })
}

/** The inputs (source files) a role's chunks hold, statically or lazily: what its process may load. */
export function roleInputs (metafile: Metafile, entry: string, lazy: boolean): Set<string> {
  const outputs = metafile.outputs
  const start = Object.keys(outputs).find((o) => outputs[o].entryPoint === entry)
  const seen = new Set<string>()
  const inputs = new Set<string>()
  const walk = (o: string): void => {
    if (seen.has(o) || outputs[o] === undefined) return
    seen.add(o)
    for (const i of Object.keys(outputs[o].inputs)) inputs.add(i)
    for (const i of outputs[o].imports) if (i.external !== true && (i.kind === 'import-statement' || (lazy && i.kind === 'dynamic-import'))) walk(i.path)
  }
  if (start !== undefined) walk(start)
  return inputs
}

/** du -sk of a folder: disk blocks, as a layer's size is counted. */
export function diskBytes (dir: string): number {
  let total = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    total += e.isDirectory() ? diskBytes(p) : statSync(p).blocks * 512
  }
  return total
}

const mb = (n: number): string => `${(n / 1e6).toFixed(2)} MB`

if (import.meta.main) {
  const args = process.argv.slice(2)
  const at = args.indexOf('--layer')
  const layer = at >= 0
  const out = layer ? args[at + 1] : undefined
  if ((layer && (out === undefined || out.startsWith('--'))) || args.some((a, i) => a !== '--layer' && (!layer || i !== at + 1))) {
    process.stderr.write('usage: node scripts/bundle.ts [--layer DIR]\n')
    process.exit(2)
  }
  const r = await bundle({ out, layer })
  const total = r.files.reduce((s, f) => s + f.bytes, 0)
  process.stdout.write(`${relative(process.cwd(), join(r.out, 'dist')) || '.'}: ${r.files.length} files, ${mb(total)}; ${r.bundled.length} packages bundled, external: ${EXTERNALS.join(', ')}\n`)
  for (const role of r.roles) process.stdout.write(`  ${role.role.padEnd(8)} loads ${mb(role.bytes)} (${role.files} files), ${mb(role.withLazy)} with what it imports later\n`)
  if (layer) process.stdout.write(`layer ${r.out}: ${mb(diskBytes(r.out))} on disk; node_modules: ${r.copied.join(', ')}\n`)
}
