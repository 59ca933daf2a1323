// Pod annotations from a Kubernetes downward-API file: one `key="value"` per line, the value Go-quoted.
import { readFileSync } from 'node:fs'
import { RemoraError } from '../errors.ts'

/** Annotations and the file they came from (named in every error about one of them). */
export interface Annotations {
  readonly file: string
  readonly values: ReadonlyMap<string, string>
}

const SIMPLE: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\\': 92, '"': 34, "'": 39 }

/** The body of a Go double-quoted string literal (as strconv.Quote writes it) → its text. */
export function unquoteGo (quoted: string): string {
  const bytes: number[] = []
  const src = Buffer.from(quoted, 'utf8')
  for (let i = 0; i < src.length; i++) {
    if (src[i] !== 0x5c) { bytes.push(src[i]); continue }
    const c = String.fromCharCode(src[++i])
    const hex = (n: number): number => {
      const digits = src.subarray(i + 1, i + 1 + n).toString('latin1')
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(digits)) throw new Error(`bad escape \\${c}${digits}`)
      i += n
      return parseInt(digits, 16)
    }
    if (c in SIMPLE) bytes.push(SIMPLE[c])
    else if (c === 'x') bytes.push(hex(2))
    else if (c === 'u' || c === 'U') bytes.push(...Buffer.from(String.fromCodePoint(hex(c === 'u' ? 4 : 8)), 'utf8'))
    else if (/[0-7]/.test(c) && /^[0-7]{2}$/.test(src.subarray(i + 1, i + 3).toString('latin1'))) {
      bytes.push(parseInt(c + src.subarray(i + 1, i + 3).toString('latin1'), 8) & 0xff)
      i += 2
    } else throw new Error(`bad escape \\${c}`)
  }
  return Buffer.from(bytes).toString('utf8')
}

/** Parses the downward-API annotations file's text; `file` is only for the messages. */
export function parseAnnotations (text: string, file: string): Annotations {
  const values = new Map<string, string>()
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return
    const m = /^([^=\s]+)="((?:[^"\\]|\\.)*)"\s*$/.exec(line)
    try {
      if (m === null) throw new Error('expected key="value"')
      values.set(m[1], unquoteGo(m[2]))
    } catch (err) {
      throw new RemoraError('REMORA_CONFIG_ANNOTATION', `annotations file ${file} line ${i + 1}: ${(err as Error).message} (a downward-API file of metadata.annotations)`)
    }
  })
  return Object.freeze({ file, values })
}

/** Reads and parses the file; an unreadable file stops start-up naming it. */
export function readAnnotationsFile (file: string): Annotations {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new RemoraError('REMORA_CONFIG_ANNOTATION', `cannot read annotations file ${file}: ${(err as Error).message}; mount metadata.annotations there with a downwardAPI volume, or unset REMORA_ANNOTATIONS_FILE`, { cause: err })
  }
  return parseAnnotations(text, file)
}
