// The folders of src/ import one way only, down the layers of docs/DESIGN.md: lint refuses an import
// that points up or sideways, and the import graph of the tree as it stands has no cycle.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { ESLint } from 'eslint'
import { LAYERS } from '../eslint.config.js'

const ROOT = new URL('..', import.meta.url).pathname
const SRC = join(ROOT, 'src')

/** The layer row of a path under src/ (a folder, or cli.ts / errors.ts). */
function rowOf (pathInSrc: string): { name: string, row: number } {
  const name = pathInSrc.split('/')[0]
  const row = LAYERS.findIndex((r) => r.includes(name))
  if (row < 0) throw new Error(`src/${name} is in no layer of eslint.config.js: place it in LAYERS and in docs/DESIGN.md's picture`)
  return { name, row }
}

t.test('lint refuses an import that points up or sideways, type imports included', async (t) => {
  const eslint = new ESLint({ cwd: ROOT })
  const check = async (file: string, code: string): Promise<string[]> => {
    const [result] = await eslint.lintText(code, { filePath: join(ROOT, file) })
    return result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message)
  }
  const up = await check('src/config/probe.ts', "import { authorize } from '../inbound/authorization.ts'\nexport const x = authorize\n")
  t.match(up, [/src\/config may not import src\/inbound/], 'config importing inbound (up) is refused, naming both')
  const typeOnly = await check('src/outbound/probe.ts', "import type { ProxyContext } from '../proxy/context.ts'\nexport type X = ProxyContext\n")
  t.match(typeOnly, [/src\/outbound may not import src\/proxy/], 'a type import counts too')
  const sideways = await check('src/inbound/probe.ts', "import { routeOutbound } from '../outbound/route.ts'\nexport const x = routeOutbound\n")
  t.match(sideways, [/src\/inbound may not import src\/outbound/], 'inbound and outbound never import each other')
  const control = await check('src/outbound/probe.ts', "import { Catalog } from '../control/catalog.ts'\nexport const x = Catalog\n")
  t.match(control, [/src\/outbound may not import src\/control/], 'the data path never imports the control plane')
  const roles = await check('src/control/probe.ts', "import { startSidecar } from '../proxy/sidecar.ts'\nexport const x = startSidecar\n")
  t.match(roles, [/src\/control may not import src\/proxy/], 'nothing but the CLI imports src/proxy')
  const leaf = await check('src/mesh/probe.ts', "import { parseDuration } from '../parse/duration.ts'\nexport const x = parseDuration\n")
  t.match(leaf, [/src\/mesh may not import src\/parse/], 'the mesh vocabulary imports nothing of remora\'s')
  t.same(await check('src/config/probe.ts', "import type { Service } from '../mesh/service.ts'\nexport type X = Service\n"), [], 'an import that points down is fine')
})

t.test('the folder-level import graph of src/ points down the layers, so it has no cycle', async (t) => {
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))
  t.ok(files.length > 50, `read ${files.length} files`)
  const wrong: string[] = []
  let edges = 0
  for (const file of files) {
    const from = rowOf(file)
    const text = readFileSync(join(SRC, file), 'utf8')
    // Static imports and re-exports (value and type), and dynamic import()s.
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'|import\('(\.[^']+)'\)/g)) {
      const target = relative(SRC, normalize(join(dirname(join(SRC, file)), m[1] ?? m[2])))
      if (target.startsWith('..')) continue
      const to = rowOf(target)
      if (to.name === from.name) continue
      edges++
      if (to.row <= from.row) wrong.push(`src/${file} → src/${target} (row ${from.row} → row ${to.row})`)
    }
  }
  t.ok(edges > 100, `${edges} imports between folders`)
  t.same(wrong, [], 'every import between folders points to a lower row')
})
