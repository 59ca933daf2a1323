// `remora inject`: Kubernetes YAML from a file or stdin, written to stdout with the sidecar added.
import { readFileSync } from 'node:fs'
import { buffer } from 'node:stream/consumers'
import { InjectSettings, readSettings, type Environment } from '../config/env.ts'
import { checkMeshWide } from '../injection/mesh-wide.ts'
import { RemoraError } from '../errors.ts'
import { injectYaml } from './yaml.ts'

export interface InjectIo {
  readonly stdin: NodeJS.ReadableStream & { readonly isTTY?: boolean }
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
}

/** --file is the input (a path, or `-` for stdin), not a setting: it has no variable. */
export const FILE_FLAG = '--file'

async function readInput (file: string | undefined, io: InjectIo): Promise<{ source: string, yaml: string }> {
  if (file !== undefined && file !== '-') {
    try {
      return { source: file, yaml: readFileSync(file, 'utf8') }
    } catch (err) {
      throw new RemoraError('REMORA_INJECT_READ', `cannot read ${file}: ${(err as Error).message}`, { cause: err })
    }
  }
  if (file === undefined && io.stdin.isTTY === true) {
    throw new RemoraError('REMORA_CONFIG_FLAG', 'no input: give --file <path>, or pipe YAML in (remora inject < app.yaml, kubectl get deploy web -o yaml | remora inject)')
  }
  try {
    // Buffer's decoding keeps a byte order mark (TextDecoder would drop it): the output keeps every byte.
    return { source: '<stdin>', yaml: (await buffer(io.stdin)).toString('utf8') }
  } catch (err) {
    throw new RemoraError('REMORA_INJECT_READ', `cannot read stdin: ${(err as Error).message}`, { cause: err })
  }
}

/** Reads the input, writes the injected YAML to stdout and one line per workload left alone to stderr. */
export async function runInject (
  flags: ReadonlyMap<string, string>, fromStdin: boolean, env: Environment = process.env,
  io: InjectIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const file = flags.get(FILE_FLAG)
  if (fromStdin && file !== undefined && file !== '-') throw new RemoraError('REMORA_CONFIG_FLAG', `- (stdin) and --file ${file} do not go together: give one input`)
  const rest = new Map(flags)
  rest.delete(FILE_FLAG)
  const { namespaceAnnotations, ...mesh } = readSettings(InjectSettings, env, rest)
  checkMeshWide(mesh)
  const { source, yaml } = await readInput(file, io)
  const result = injectYaml(yaml, { source, mesh, namespaceAnnotations })
  for (const w of result.warnings) io.stderr.write(`remora inject: ${w}\n`)
  await new Promise<void>((resolve, reject) => io.stdout.write(result.output, (err) => err == null ? resolve() : reject(err)))
  return 0
}
