// Preloaded into a CLI run (node --import) by the tests that promise "no network": any outgoing connection
// attempt is written to NO_NETWORK_LOG and refused.
import net from 'node:net';
import { appendFileSync } from 'node:fs';

const log = process.env.NO_NETWORK_LOG;
const original = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connect(...args) {
  if (log) appendFileSync(log, `${JSON.stringify(args[0])}\n`);
  this.destroy(new Error('network disabled by test'));
  return this;
};
void original;
