// Runs first in `npm test`: proves the pinned runtime is in use (`tap build` follows: tap compiles its plugin list into node_modules).
const major = Number(process.versions.node.split('.')[0])
process.stdout.write(`remora tests on Node ${process.version} (${process.execPath})\n`)
if (major < 24) {
  process.stderr.write('remora needs Node 24: run tests through `npm test`, which uses the pinned `node` dev dependency.\n')
  process.exit(1)
}
