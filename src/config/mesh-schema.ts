// JSON schema of the local mesh file (deploy/local/mesh.yaml is an example); see docs/mesh-file.md.

const hostPort = { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s\\[\\]]+):[0-9]{1,5}$', description: 'host:port, for example 127.0.0.1:15006' }
const port = { type: 'integer', minimum: 1, maximum: 65535 }
const dnsLabel = { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63, description: 'a DNS label: lower-case letters, digits and "-", at most 63 (for example web-api)' }
const protocol = { enum: ['auto', 'http1', 'http2', 'grpc', 'opaque'] }
const duration = { type: 'string', pattern: '^\\d+(\\.\\d+)?(ms|s|m|h)$', description: 'a duration such as 250ms, 2s or 5m' }
const count = (max: number) => ({ type: 'integer', minimum: 1, maximum: max })
const limits = {
  type: 'object',
  additionalProperties: false,
  properties: { maxConcurrent: count(1_000_000), maxQueued: { type: 'integer', minimum: 0, maximum: 1_000_000 } },
}

export const meshSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    trustDomain: { type: 'string', pattern: '^[a-z0-9.-]+$', description: 'a trust domain such as cluster.local' },
    workloads: {
      type: 'object',
      propertyNames: dnsLabel,
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['appPorts'],
        properties: {
          namespace: dnsLabel,
          serviceAccount: dnsLabel,
          appPorts: {
            type: 'array',
            minItems: 1,
            items: {
              oneOf: [
                port,
                { type: 'object', additionalProperties: false, required: ['port'], properties: { port, protocol } },
              ],
            },
          },
          sidecar: {
            type: 'object',
            additionalProperties: false,
            properties: { inbound: hostPort, outbound: hostPort, admin: hostPort },
          },
          bootstrapToken: { type: 'string', pattern: '^[A-Za-z0-9._~+/=-]{16,}$', description: 'a secret of at least 16 letters, digits or ._~+/=- (the workload proves its identity to the local control plane with it)' },
          authorization: {
            type: 'object',
            additionalProperties: false,
            properties: {
              default: { enum: ['all-authenticated', 'all-unauthenticated', 'deny'] },
              allow: {
                type: 'object',
                propertyNames: { type: 'string', pattern: '^[0-9]{1,5}$', description: 'an app port number' },
                additionalProperties: {
                  type: 'array',
                  minItems: 1,
                  items: { type: 'string', pattern: '^(ns:[a-z0-9]([-a-z0-9]*[a-z0-9])?|spiffe://[^\\s]+)$', description: 'a SPIFFE ID (spiffe://<trust-domain>/ns/<ns>/sa/<sa>) or ns:<namespace>' },
                },
              },
            },
          },
          inbound: {
            type: 'object',
            additionalProperties: false,
            properties: {
              ...limits.properties,
              rateLimit: {
                type: 'object',
                additionalProperties: false,
                required: ['requestsPerSecond'],
                properties: { requestsPerSecond: { type: 'number', exclusiveMinimum: 0 }, burst: count(1_000_000) },
              },
            },
          },
        },
      },
    },
    services: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'port', 'endpoints'],
        properties: {
          name: dnsLabel,
          namespace: dnsLabel,
          port,
          protocol,
          /** Virtual IPs of the service (as Kubernetes cluster IPs): a connection redirected to one finds it. */
          addresses: { type: 'array', items: { type: 'string' } },
          balancer: { enum: ['p2c-ewma', 'least-request', 'round-robin'] },
          timeout: duration,
          idleTimeout: duration,
          connectTimeout: duration,
          retry: {
            type: 'object',
            additionalProperties: false,
            properties: {
              on: { type: 'array', items: { enum: ['5xx', 'gateway-error', 'reset', 'unavailable', 'resource-exhausted', 'internal', 'deadline-exceeded', 'cancelled'] } },
              attempts: count(10),
              budget: {
                type: 'object',
                additionalProperties: false,
                properties: { ratio: { type: 'number', minimum: 0, maximum: 10 }, minPerSecond: { type: 'number', minimum: 0 } },
              },
              backoff: { type: 'object', additionalProperties: false, properties: { base: duration, max: duration } },
              maxReplayBytes: { type: 'integer', minimum: 0, maximum: 16 * 1024 * 1024 },
            },
          },
          circuitBreaker: {
            type: 'object',
            additionalProperties: false,
            properties: {
              consecutiveFailures: count(1000),
              baseEjection: duration,
              maxEjection: duration,
              maxEjectedPercent: { type: 'integer', minimum: 0, maximum: 100 },
            },
          },
          limits,
          endpoints: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['targetPort'],
              oneOf: [{ required: ['workload'] }, { required: ['address'] }],
              properties: {
                workload: dnsLabel,
                address: hostPort,
                targetPort: port,
                weight: { type: 'integer', minimum: 0, maximum: 1000 },
                identity: { type: 'string', pattern: '^spiffe://[^/]+/.+', description: 'a SPIFFE ID, for example spiffe://cluster.local/ns/demo/sa/web' },
              },
            },
          },
        },
      },
    },
  },
} as const
