// Cargo's runner for wasm32-wasip1 test binaries (make test-wasm): runs one
// libtest binary in Node's V8 through WASI preview 1, with the arguments
// cargo passes (test filters, --ignored, ...) and the environment, and
// exits with its exit code.
//
// The whole file system is visible to the test (preopened at /), so tests
// that read the corpora beside the checkout read them as natively. A test
// that panics aborts the module (wasm32-wasip1 has panic=abort): libtest
// cannot report the rest of the binary's tests then, so the panic message
// above the trap names the failing test.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import { argv, env, exit } from 'node:process';

const [file, ...args] = argv.slice(2);
if (!file) {
  console.error('usage: wasi-run.mjs <test.wasm> [libtest arguments...]');
  exit(2);
}
const wasi = new WASI({
  version: 'preview1',
  args: [file, ...args],
  env,
  preopens: { '/': '/' },
  returnOnExit: true,
});
try {
  const module = await WebAssembly.compile(await readFile(file));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  exit(wasi.start(instance));
} catch (error) {
  console.error(`${file}: ${error}`);
  exit(101);
}
