// The remora command as a user meets it: help that documents every setting, clear start-up errors.
import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { ProxySettings } from '../src/config/env.ts'
import { CLI } from './harness/mesh.ts'

const run = async (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> => {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { env: { ...process.env, REMORA_MESH_FILE: '' } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

t.test('remora --help lists the roles; remora proxy --help documents every variable', async (t) => {
  const top = await run('--help')
  t.equal(top.code, 0)
  for (const role of ['proxy', 'control', 'init', 'inject', 'injector', 'demo']) t.match(top.stdout, new RegExp(`^  ${role} `, 'm'))
  const proxy = await run('proxy', '--help')
  t.equal(proxy.code, 0)
  for (const s of Object.values(ProxySettings)) t.match(proxy.stdout, s.env, `documents ${s.env}`)
})

t.test('start-up errors exit 2 and say what to fix', async (t) => {
  const missing = await run('proxy', '--mesh-file', '/no/such/mesh.yaml')
  t.equal(missing.code, 2)
  t.match(missing.stderr, /cannot read mesh file \/no\/such\/mesh\.yaml.*REMORA_MESH_FILE_READ/)
  const none = await run('proxy')
  t.match(none.stderr, /set REMORA_CONTROL_ADDR \(or --control-addr\) to the control plane, or REMORA_MESH_FILE \(or --mesh-file\)/)
  const flag = await run('proxy', '--mesh-file')
  t.match(flag.stderr, /option --mesh-file needs a value/)
  const role = await run('frobnicate')
  t.equal(role.code, 2)
  t.match(role.stderr, /unknown role "frobnicate"/)
})
