// Test harness: how busy the machine is right now, measured, for tests whose timings must scale with it.

/**
 * How many times slower than on an idle machine CPU-bound work runs in this process right now: the
 * wall time a fixed amount of CPU work takes over the CPU time it used (at least 1). About 1 on an
 * idle machine; with more runnable processes than cores it approaches their ratio (two CPU hogs beside
 * a test on two cores: about 1.5, with another test file's processes as well: 2 to 4). A test whose
 * timings are fixed for an idle machine (a certificate lifetime, an app's delay) multiplies them by
 * this, so they keep their ratio to the work they time. Blocks the event loop for the measurement
 * (`cpuMs` of CPU, `cpuMs` × the result of wall time): call it before starting anything.
 */
export function measureSlowdown (cpuMs = 200): number {
  const wall = performance.now()
  const cpu = process.cpuUsage()
  let sink = 0
  for (;;) {
    for (let i = 1; i < 20_000; i++) sink += Math.sqrt(i)
    const used = process.cpuUsage(cpu)
    if ((used.user + used.system) / 1000 >= cpuMs) break
  }
  if (Number.isNaN(sink)) throw new Error('unreachable')
  return Math.max(1, (performance.now() - wall) / cpuMs)
}
