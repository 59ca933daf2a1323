// What one check found, and how remora check prints them: a line each (√ passed, ‼ warning, × failed), or JSON.

export type Outcome = 'ok' | 'warn' | 'fail'

export interface CheckResult {
  /** The heading it is printed under, e.g. "kubernetes-api". */
  readonly group: string
  /** What was checked, e.g. "the API server is 1.29 or later". */
  readonly check: string
  readonly outcome: Outcome
  /** Passed: what was found. Otherwise: what is wrong and what to do about it. */
  readonly message: string
}

export const ok = (group: string, check: string, message = ''): CheckResult => ({ group, check, outcome: 'ok', message })
export const warn = (group: string, check: string, message: string): CheckResult => ({ group, check, outcome: 'warn', message })
export const fail = (group: string, check: string, message: string): CheckResult => ({ group, check, outcome: 'fail', message })

const MARKS: Record<Outcome, string> = { ok: '√', warn: '‼', fail: '×' }

export interface Summary { readonly ok: number, readonly warn: number, readonly fail: number }

export function summarize (results: readonly CheckResult[]): Summary {
  const count = (o: Outcome): number => results.filter((r) => r.outcome === o).length
  return { ok: count('ok'), warn: count('warn'), fail: count('fail') }
}

/** Grouped lines under their headings, then one line of totals. */
export function formatText (results: readonly CheckResult[]): string {
  const out: string[] = []
  let group: string | undefined
  for (const r of results) {
    if (r.group !== group) {
      if (group !== undefined) out.push('')
      group = r.group
      out.push(group, '-'.repeat(group.length))
    }
    out.push(`${MARKS[r.outcome]} ${r.check}${r.message === '' ? '' : `: ${r.message}`}`)
  }
  const s = summarize(results)
  out.push('', s.fail > 0
    ? `Status check results are × (${s.fail} failed, ${s.warn} warning${s.warn === 1 ? '' : 's'}, ${s.ok} passed)`
    : `Status check results are √ (${s.ok} passed${s.warn > 0 ? `, ${s.warn} warning${s.warn === 1 ? '' : 's'}` : ''})`)
  return out.join('\n') + '\n'
}

export function formatJson (results: readonly CheckResult[]): string {
  const summary = summarize(results)
  return JSON.stringify({ success: summary.fail === 0, summary, checks: results }, null, 2) + '\n'
}
