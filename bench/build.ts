// Compiling remora to JavaScript in place (dist/, tsc -p tsconfig.build.json) for bench:mtls. tsc still
// emits JavaScript on type errors (a working tree mid-edit), so those are reported and the run goes on.
// (`npm run bench` and bench:control run the esbuild bundle the image ships: scripts/bundle.ts.)
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = new URL('..', import.meta.url).pathname
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc')

/** `npm run build` into this checkout's dist/; returns dist/cli.js. */
export function buildInPlace (log: (line: string) => void): string {
  const cli = join(ROOT, 'dist/cli.js')
  tsc(ROOT, [], cli, log)
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
