// Types of eslint.config.js for the tests that read its layers (test/layering.test.ts).
export declare const LAYERS: ReadonlyArray<readonly string[]>
declare const config: unknown
export default config
