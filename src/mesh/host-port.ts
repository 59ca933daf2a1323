// A host and a port: where a listener, a peer sidecar or a control plane is.
export interface HostPort { readonly host: string, readonly port: number }
