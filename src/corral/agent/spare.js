// corral's pre-started node for one-shot runs: node is already up when the code
// arrives, so a run does not pay node's start-up. It reads one line
// {"code", "env", "cwd"} from fd 3 (an isolated run's also brings "files", each
// [relative path, base64 data, mode], and "home": written first; and "report_fd",
// where its exit code goes as it exits) and runs the code as `node -e` would: as a
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
if (request.report_fd !== undefined) { // an isolated run: say how it ended before the kernel tears it down
  let uncaught = false; // node prints an uncaught error after 'exit': then the process's own end tells
  process.on('uncaughtExceptionMonitor', () => { uncaught = true; });
  process.on('exit', (code) => {
    if (uncaught) return;
    try { fs.writeSync(request.report_fd, `${code}\n`); } catch (error) { /* the agent went away */ }
  });
}
for (const [relative, data, mode] of request.files || []) { // paths checked by the agent
  const target = path.join(request.home, relative);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.writeFileSync(target, Buffer.from(data, 'base64'), { mode, flag: 'w' });
}
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
