#!/usr/bin/env node
// Hugging Face tokenizers' encode speed, the reference for `crucible bench tokenize`.
//   node scripts/bench_tokenizers.js TOKENIZER_JSON CHUNKS_JSONL RUNS
// CHUNKS_JSONL holds one JSON string per line (the texts `crucible bench tokenize` times too).
// Encodes them one after another (single thread: no encodeBatch), one untimed warm-up pass,
// then RUNS timed passes; prints one JSON object with the median pass.
'use strict';
process.env.RAYON_NUM_THREADS = '1';
process.env.TOKENIZERS_PARALLELISM = 'false';
const fs = require('fs');
const path = require('path');
const oracle = path.resolve(__dirname, '../tests/oracle');
const { Tokenizer } = require(path.join(oracle, 'node_modules/@anush008/tokenizers'));

const [tokPath, chunksPath, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const chunks = fs.readFileSync(chunksPath, 'utf8').split('\n').filter((l) => l.length)
  .map((l) => JSON.parse(l));
const bytes = chunks.reduce((n, c) => n + Buffer.byteLength(c, 'utf8'), 0);
const tok = Tokenizer.fromFile(tokPath);

async function pass() {
  let tokens = 0;
  const t0 = process.hrtime.bigint();
  for (const c of chunks) {
    const e = await tok.encode(c, null, { addSpecialTokens: false });
    tokens += e.getLength();
  }
  return { s: Number(process.hrtime.bigint() - t0) / 1e9, tokens };
}

(async () => {
  const warm = await pass();
  const times = [];
  for (let i = 0; i < runs; i++) times.push((await pass()).s);
  times.sort((a, b) => a - b);
  const n = times.length;
  const s = n % 2 ? times[(n - 1) / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
  const version = JSON.parse(fs.readFileSync(
    path.join(oracle, 'node_modules/@anush008/tokenizers/package.json'), 'utf8')).version;
  console.log(JSON.stringify({
    library: '@anush008/tokenizers ' + version, bytes, tokens: warm.tokens, pass_s_median: s,
    mb_per_s: bytes / s / 1e6, tokens_per_s: warm.tokens / s,
  }));
})().catch((e) => { console.error(e); process.exit(1); });
