// What every injected pod gets, mesh-wide (InjectSettings), as the roles that inject read it: `remora inject`
// (offline), the webhook in `remora control`, and `remora injector`.
import { flagOf, InjectSettings, readSettings, type Environment } from '../config/env.ts'
import { RemoraError } from '../errors.ts'
import { quantityValue } from '../parse/quantity.ts'
import type { MeshWide } from './pod.ts'

/** Refuses settings no pod could be injected with (checked once at start, not per pod). */
export function checkMeshWide (mesh: MeshWide): MeshWide {
  if (quantityValue(mesh.proxyMemoryRequest) > quantityValue(mesh.proxyMemoryLimit)) {
    throw new RemoraError('REMORA_CONFIG_FLAG', `the sidecar's memory request ${mesh.proxyMemoryRequest} (${flagOf(InjectSettings.proxyMemoryRequest)}) is above its limit ${mesh.proxyMemoryLimit} (${flagOf(InjectSettings.proxyMemoryLimit)})`)
  }
  return mesh
}

/**
 * The mesh-wide settings of a role that serves the webhook, from the flags that are InjectSettings' (the role's
 * other flags are its own) and the environment. REMORA_TRUST_ANCHORS_CONFIGMAP=off (the control plane publishes
 * none) leaves the sidecars mounting the default name, which the user then provides.
 */
export function readMeshWide (env: Environment, flags: ReadonlyMap<string, string>): MeshWide {
  const { namespaceAnnotations: _offline, ...settings } = InjectSettings
  const own = new Set(Object.values(settings).map(flagOf))
  const anchors = InjectSettings.trustAnchorsConfigMap
  const off = (flags.get(flagOf(anchors)) ?? env[anchors.env])?.trim() === 'off'
  const injectEnv = off ? { ...env, [anchors.env]: undefined } : env
  const injectFlags = new Map([...flags].filter(([f]) => own.has(f) && !(off && f === flagOf(anchors))))
  return checkMeshWide(readSettings(settings, injectEnv, injectFlags))
}

/** The flags of InjectSettings, but for the offline-only --namespace-annotations. */
export const MESH_WIDE_FLAGS: ReadonlySet<string> = new Set(Object.entries(InjectSettings).filter(([k]) => k !== 'namespaceAnnotations').map(([, s]) => flagOf(s)))
