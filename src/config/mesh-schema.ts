// JSON schema of the local mesh file (deploy/local/mesh.yaml is an example); see docs/mesh-file.md.

const hostPort = { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s\\[\\]]+):[0-9]{1,5}$', description: 'host:port, for example 127.0.0.1:15006' }
const port = { type: 'integer', minimum: 1, maximum: 65535 }
const dnsLabel = { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63, description: 'a DNS label: lower-case letters, digits and "-", at most 63 (for example web-api)' }
const protocol = { enum: ['auto', 'http1', 'http2', 'grpc'] }

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
