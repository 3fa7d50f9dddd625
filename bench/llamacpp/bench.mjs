// llama.cpp's decode throughput on a GGUF file, through node-llama-cpp (pinned in
// package-lock.json; the prebuilt CPU binaries of @node-llama-cpp/linux-x64, never a local
// build or a download). bench/llamacpp_bench.sh runs it beside `crucible bench generate`.
//
//   node bench/llamacpp/bench.mjs --model M.gguf --threads T [--sequences 1,32]
//        [--prompt-tokens 32] [--new-tokens 32] [--check-prompt 1,2,3] [--check-tokens 16]
//
// For each S in --sequences: S sequences of one context each get a random prompt (token ids
// fed directly, uniform over the vocabulary, as crucible's bench does) and decode greedily
// --new-tokens tokens, all S at once (node-llama-cpp puts the pending tokens of every sequence
// into one llama_decode batch). As in crucible's bench, the prompt's prefill and the first token
// it yields are taken out: the clock starts once every sequence has its first token, and the
// figure is S * (new_tokens - 1) / elapsed. Best of 2 runs for S <= 8, one run above (as
// crucible). --check-prompt: also print the greedy continuation of those token ids.
// Prints one JSON object on stdout.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

function parse_args(argv) {
    const a = {sequences: [1, 32], promptTokens: 32, newTokens: 32, threads: 0,
               checkPrompt: null, checkTokens: 16};
    for (let i = 2; i < argv.length; i++) {
        const k = argv[i], v = argv[i + 1];
        if (k === "--model") a.model = v;
        else if (k === "--threads") a.threads = Number(v);
        else if (k === "--sequences") a.sequences = v.split(",").filter((x) => x !== "").map(Number);
        else if (k === "--prompt-tokens") a.promptTokens = Number(v);
        else if (k === "--new-tokens") a.newTokens = Number(v);
        else if (k === "--check-prompt") a.checkPrompt = v.split(",").map(Number);
        else if (k === "--check-tokens") a.checkTokens = Number(v);
        else throw new Error(`unknown argument ${k}`);
        i++;
    }
    if (!a.model || !(a.threads > 0)) throw new Error("needs --model FILE.gguf and --threads N > 0");
    return a;
}

// A small deterministic generator (mulberry32) for the random prompts.
function rng(seed) {
    return () => {
        seed = (seed + 0x6D2B79F5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

// Greedy decode of `count` tokens after `prompt` on `seq`, as an async iterator the caller
// pulls one token at a time (so S sequences advance in lock step, one batch per step).
function decoder(seq, prompt) {
    return seq.evaluate(prompt, {temperature: 0, yieldEogToken: true})[Symbol.asyncIterator]();
}

async function decode_run(context, seqs, prompts, newTokens) {
    for (const s of seqs) await s.clearHistory();
    const its = seqs.map((s, i) => decoder(s, prompts[i]));
    await Promise.all(its.map((it) => it.next()));  // prefill + first token: not timed
    const t0 = process.hrtime.bigint();
    await Promise.all(its.map(async (it) => {
        for (let k = 1; k < newTokens; k++) {
            const r = await it.next();
            if (r.done) throw new Error("the sequence ended early");
        }
    }));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await Promise.all(its.map((it) => it.return()));
    return seqs.length * (newTokens - 1) / seconds;
}

async function main() {
    const a = parse_args(process.argv);
    // build "never" + skipDownload: only the prebuilt binaries in node_modules; gpu false: the
    // CPU build. maxThreads caps node-llama-cpp's thread splitter at the requested count.
    const llama = await getLlama({gpu: false, build: "never", skipDownload: true,
                                  maxThreads: a.threads, logLevel: LlamaLogLevel.error});
    const model = await llama.loadModel({modelPath: a.model, gpuLayers: 0});
    const vocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
    const out = {llama_cpp: `node-llama-cpp (llama.cpp ${llama.llamaCppRelease.release})`,
                 gpu: llama.gpu, threads: a.threads, vocab, prompt_tokens: a.promptTokens,
                 new_tokens: a.newTokens};
    const rand = rng(1);
    for (const S of a.sequences) {
        const context = await model.createContext({
            sequences: S, contextSize: a.promptTokens + a.newTokens + 16,
            batchSize: Math.max(512, S * a.promptTokens), threads: {ideal: a.threads, min: a.threads},
            flashAttention: false});
        const seqs = [];
        for (let i = 0; i < S; i++) seqs.push(context.getSequence());
        const prompts = seqs.map(() =>
            Array.from({length: a.promptTokens}, () => Math.floor(rand() * vocab)));
        let best = 0;
        for (let r = 0; r < (S <= 8 ? 2 : 1); r++)
            best = Math.max(best, await decode_run(context, seqs, prompts, a.newTokens));
        out[`decode_tokens_per_s_seqs_${S}`] = best;
        out[`threads_used_seqs_${S}`] = context.currentThreads;
        await context.dispose();
    }
    if (a.checkPrompt) {
        const context = await model.createContext({
            contextSize: a.checkPrompt.length + a.checkTokens + 16, threads: a.threads});
        const seq = context.getSequence();
        const got = [];
        const it = decoder(seq, a.checkPrompt);
        for (let k = 0; k < a.checkTokens; k++) got.push((await it.next()).value);
        await it.return();
        out.check_completion_ids = got;
        await context.dispose();
    }
    console.log(JSON.stringify(out));
    await model.dispose();
    await llama.dispose();
}

main().catch((e) => {
    console.error(`llamacpp bench: ${e.stack ?? e}`);
    process.exit(1);
});
