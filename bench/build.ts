// Compiling remora for a benchmark, as `npm run build` does (tsc -p tsconfig.build.json): in place
// (dist/), or into a temp dir for a given checkout. tsc still emits JavaScript on type errors (a
// working tree mid-edit), so those are reported and the run goes on.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = new URL('..', import.meta.url).pathname
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc')

/** `npm run build` into this checkout's dist/; returns dist/cli.js. */
export function buildInPlace (log: (line: string) => void): string {
  const cli = join(ROOT, 'dist/cli.js')
  tsc(ROOT, [], cli, log)
  return cli
}

/** The same build of the checkout at `root` into `tmp`/js (node_modules from this one); returns its dist/cli.js. */
export function compile (root: string, tmp: string, log: (line: string) => void): string {
  const out = join(tmp, 'js')
  const dist = join(out, 'dist')
  mkdirSync(out)
  writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module' }))
  symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'))
  const cli = join(dist, 'cli.js')
  tsc(root, ['--outDir', dist], cli, log)
  return cli
}

function tsc (root: string, args: string[], cli: string, log: (line: string) => void): void {
  try {
    execFileSync(process.execPath, [TSC, '-p', join(root, 'tsconfig.build.json'), ...args], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as { stdout?: string, message: string }
    if (!existsSync(cli)) throw new Error(`compiling remora failed: ${e.stdout ?? e.message}`, { cause: err })
    log(`note: tsc reported errors, benchmarking the JavaScript it emitted anyway:\n${(e.stdout ?? '').split('\n').slice(0, 5).join('\n')}`)
  }
}
