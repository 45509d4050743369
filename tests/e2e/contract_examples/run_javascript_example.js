// Run the contract's JavaScript example against a live orchestrator.
//
// The example file is the contract's text unchanged. Its two placeholders, the URL
// 'http://localhost:9090' and 'your-jwt-token', are the only things replaced (in memory,
// each exactly once) by the live URL and a token obtained by login. The snippet uses
// `await` at top level next to `require`, which no Node module type allows as is, so it
// runs as the body of an async function (with `require` resolving from this folder);
// then the example's own getTaskStatus reads the task it created.
//
// Usage: node run_javascript_example.js BASE_URL TOKEN; prints the example's output,
// then one line `RESULT <json>` with the submission and the status answers.
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const EXAMPLE = path.join(__dirname, 'javascript_sdk_example.js');
const PLACEHOLDERS = ["'http://localhost:9090'", "'your-jwt-token'"];

async function main() {
  const [baseUrl, token] = process.argv.slice(2);
  let source = fs.readFileSync(EXAMPLE, 'utf8');
  [baseUrl, token].forEach((value, i) => {
    const placeholder = PLACEHOLDERS[i];
    if (source.split(placeholder).length !== 2) {
      throw new Error(`placeholder ${placeholder} not found exactly once`);
    }
    source = source.replace(placeholder, JSON.stringify(value));
  });
  const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
  const run = new AsyncFunction('require', `${source}\nreturn { client, result };`);
  const { client, result } = await run(createRequire(EXAMPLE));
  const status = await client.getTaskStatus(result.data);
  console.log(`RESULT ${JSON.stringify({ result, status })}`);
}

main().catch((err) => {
  const body = err.response ? ` ${err.response.status} ${JSON.stringify(err.response.data)}` : '';
  console.error(`example failed: ${err.message}${body}`);
  process.exit(1);
});
