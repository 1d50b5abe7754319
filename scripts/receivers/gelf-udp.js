// A GELF UDP receiver for tests: graygelf's server, each decoded message one JSON line.
// Usage: node gelf-udp.js PORT OUT_FILE
'use strict'
const fs = require('fs')
const [port, out] = process.argv.slice(2)
const fd = fs.openSync(out, 'a')
const server = require('graygelf/server')()
let errors = 0
server.on('message', (gelf) => fs.writeSync(fd, JSON.stringify(gelf) + '\n'))
server.on('error', (e) => {
  errors++
  process.stderr.write('gelf-udp: ' + e + '\n')
})
server.listen(Number(port), '127.0.0.1')
server._udp.on('listening', () => {
  // A larger receive buffer than the default: a chunked message is lost with any one chunk.
  try { server._udp.setRecvBufferSize(16 * 1024 * 1024) } catch (e) {}
  process.stdout.write('listening\n')
})
process.on('SIGTERM', () => {
  server.close()
  fs.closeSync(fd)
  process.exit(0)
})
