// Lint: the recommended JavaScript and TypeScript rules, nothing stylistic that tsc already checks,
// and the direction of imports between the folders of src/ (docs/DESIGN.md, "Layers").
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

/**
 * The folders of src/, top to bottom: a folder may import only from rows below its own. Folders on
 * one row never import each other (the roles; the two directions of traffic). `cli.ts` is the top,
 * `errors.ts` sits with `mesh` at the bottom.
 */
export const LAYERS = [
  ['cli.ts'],
  ['proxy', 'control', 'demo', 'init', 'inject', 'injector', 'check'],
  ['injection'],
  ['admin'],
  ['inbound', 'outbound'],
  ['http'],
  ['discovery'],
  ['transport'],
  ['identity'],
  ['telemetry'],
  ['config'],
  ['resilience'],
  ['balancer'],
  ['parse'],
  ['mesh', 'errors.ts'],
]

/** One no-restricted-imports block per folder: everything above it, and its neighbours on its row. */
function layerRules () {
  return LAYERS.flatMap((row, level) => row.map((self) => {
    const forbidden = [...LAYERS.slice(0, level).flat(), ...row.filter((other) => other !== self)]
    const files = self.endsWith('.ts') ? [`src/${self}`] : [`src/${self}/**/*.ts`]
    const prefix = self.endsWith('.ts') ? './' : '../'
    return {
      files,
      rules: {
        'no-restricted-imports': ['error', {
          patterns: forbidden.map((other) => ({
            group: other.endsWith('.ts') ? [`${prefix}${other}`] : [`${prefix}${other}/*`, `${prefix}${other}/**`],
            message: `src/${self} may not import src/${other}: imports point down the layers drawn in docs/DESIGN.md ("Layers"); move the shared piece down, or pass it in.`,
          })),
        }],
      },
    }
  }))
}

export default tseslint.config(
  { ignores: ['node_modules/', '.tap/', 'scratch/', 'bench/results/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', Buffer: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly', performance: 'readonly', AbortController: 'readonly', NodeJS: 'readonly', setImmediate: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-duplicate-imports': ['error', { allowSeparateTypeImports: true }],
    },
  },
  ...layerRules(),
)
