// corral's JavaScript session worker: keeps one V8 context alive and runs each
// code block sent on fd 3 in it, answering {"exit_code": n} on fd 4.
// Top-level let/const/function declarations persist between blocks, as in the
// node REPL. A returned promise is awaited before the block counts as done.
'use strict';
const fs = require('fs');
const readline = require('readline');
const path = require('path');
const vm = require('vm');
const { createRequire } = require('module');

function reply(exitCode) {
  fs.writeSync(4, JSON.stringify({ exit_code: exitCode }) + '\n');
}

function report(error) {
  const text = error && error.stack ? error.stack : String(error);
  process.stderr.write(`Uncaught ${text}\n`);
}

process.on('unhandledRejection', report);
process.on('uncaughtException', report);

async function serve() {
  const lines = readline.createInterface({ input: fs.createReadStream(null, { fd: 3 }), crlfDelay: Infinity });
  for await (const line of lines) {
    const { code, env, cwd } = JSON.parse(line);
    let status = 0;
    try {
      Object.assign(process.env, env);
      process.chdir(cwd);
      // require resolves from the working directory, so packages installed in home are found
      globalThis.require = createRequire(path.join(process.cwd(), '[session]'));
      const result = new vm.Script(code, { filename: '[session]' }).runInThisContext();
      if (result && typeof result.then === 'function') {
        await result;
      }
    } catch (error) {
      report(error);
      status = 1;
    }
    reply(status);
  }
  process.exit(0);
}

serve();
