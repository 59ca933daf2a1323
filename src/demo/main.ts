// `remora demo`: placeholder until the demo lands.
export function demoUsage (): string { return 'usage: remora demo\n' }
export async function runDemo (_flags: ReadonlyMap<string, string>): Promise<number> { return 0 }
