// corral's JavaScript session worker: keeps one V8 context alive and runs each
// code block sent on fd 3 in it, answering {"exit_code": n} on fd 4.
// A block's completion value (unless undefined) is reported first on fd 4 as its
// main result, {"result": {"text/plain": inspected}, "main": true}; an uncaught
// error as {"error": {name, value, traceback}}.
// Top-level let/const/function declarations persist between blocks, as in the
// node REPL. A returned promise is awaited before the block counts as done.
'use strict';
const fs = require('fs');
const readline = require('readline');
const path = require('path');
const util = require('util');
const vm = require('vm');

const MAX_TEXT = 64 * 1024;
const { createRequire } = require('module');

// every line starts with a newline: it ends whatever the block's code left unterminated on fd 4
function reply(exitCode) {
  fs.writeSync(4, '\n' + JSON.stringify({ exit_code: exitCode }) + '\n');
}

function send(message) {
  fs.writeSync(4, '\n' + JSON.stringify(message) + '\n');
}

function describe(error) {
  const name = error && typeof error.name === 'string' ? error.name : 'Error';
  const value = error && typeof error.message === 'string' ? error.message : String(error);
  const traceback = error && typeof error.stack === 'string' ? error.stack : String(error);
  return { name, value: value.slice(0, MAX_TEXT), traceback: traceback.slice(0, MAX_TEXT) };
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
      let result = new vm.Script(code, { filename: '[session]' }).runInThisContext();
      if (result && typeof result.then === 'function') {
        result = await result;
      }
      if (result !== undefined) {
        send({ result: { 'text/plain': util.inspect(result).slice(0, MAX_TEXT) }, main: true });
      }
    } catch (error) {
      report(error);
      try {
        send({ error: describe(error) });
      } catch (ignored) {
        // an error object that cannot be described: its stderr report stands
      }
      status = 1;
    }
    reply(status);
  }
  process.exit(0);
}

serve();
