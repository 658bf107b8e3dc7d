// corral's pre-started node for one-shot runs: node is already up when the code
// arrives, so a run does not pay node's start-up. It reads one line
// {"code", "env", "cwd"} from fd 3 and runs the code as `node -e` would: as a
// CommonJS module named [eval], with require resolving from the working
// directory, an uncaught error printed with its stack and exit code 1.
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const { createRequire } = require('module');

function readRequest() {
  const chunks = [];
  const buffer = Buffer.alloc(65536);
  for (;;) {
    let count;
    try {
      count = fs.readSync(3, buffer, 0, buffer.length, null);
    } catch (error) {
      if (error.code === 'EAGAIN') continue;
      throw error;
    }
    if (count === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, count)));
    if (buffer.subarray(0, count).includes(10)) break;
  }
  fs.closeSync(3);
  const line = Buffer.concat(chunks).toString('utf8');
  return line.trim() ? JSON.parse(line) : null;
}

const request = readRequest();
if (request === null) process.exit(0); // the agent went away without using us
for (const name of Object.keys(process.env)) delete process.env[name];
Object.assign(process.env, request.env);
process.chdir(request.cwd);
process.argv = [process.argv[0]];
const filename = path.join(process.cwd(), '[eval]');
const wrapper = vm.compileFunction(request.code, ['exports', 'require', 'module', '__filename', '__dirname'], {
  filename: '[eval]',
});
const module_ = { exports: {}, filename, id: '[eval]', loaded: false, paths: [] };
wrapper.call(module_.exports, module_.exports, createRequire(filename), module_, filename, '.');
