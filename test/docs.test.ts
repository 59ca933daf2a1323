// The README stays a true reference: every setting and every proxy error reason is documented.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { ControlSettings, flagOf, ProxySettings } from '../src/config/env.ts'
import { ProxyErrors } from '../src/errors.ts'

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

t.test('README documents every REMORA_* setting of the proxy and the control plane with its flag and default', async (t) => {
  for (const s of [...Object.values(ProxySettings), ...Object.values(ControlSettings)]) {
    // REMORA_ADMIN_ADDR and others exist for both roles, with their own defaults: any row may match.
    const rows = readme.split('\n').filter((l) => l.includes(`\`${s.env}\``) && l.includes(`\`${flagOf(s)}\``))
    const row = rows.find((l) => s.default === undefined || l.includes(`\`${s.default}\``)) ?? rows[0]
    t.ok(row, `${s.env} has a row`)
    t.match(row ?? '', `\`${flagOf(s)}\``, `${s.env} row names ${flagOf(s)}`)
    if (s.default !== undefined) t.match(row ?? '', `\`${s.default}\``, `${s.env} row gives default ${s.default}`)
  }
})

t.test('README lists every reason the proxy can answer with, with its HTTP status', async (t) => {
  for (const r of Object.values(ProxyErrors)) {
    t.match(readme, new RegExp(`\\| \`${r.reason}\` \\| ${r.status} \\|`), `${r.reason} → ${r.status}`)
  }
})
