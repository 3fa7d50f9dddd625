// The official OpenAI client (npm `openai` 4.x, the line that supports Node 18, pinned in
// package-lock.json) against a running
// `crucible serve` of the tool-calling test model of tests/serve_tools_test.cpp, which starts
// the server and runs this script:  node openai_sdk_check.mjs http://127.0.0.1:PORT/v1
// Each check states what the client must see; the first failure exits 1 with its reason.
import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.argv[2], apiKey: 'unused', maxRetries: 0 });
const add = {
  type: 'function',
  function: {
    name: 'add',
    parameters: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } },
  },
};
const tools = [add, { type: 'function', function: { name: 'mul' } }];
const ask = (content, extra = {}) => ({
  model: 'tool-model', temperature: 0, max_tokens: 200, tools,
  messages: [{ role: 'user', content }], ...extra,
});
let passed = 0;
function check(what, ok, got) {
  if (!ok) {
    console.error(`openai-sdk-check: FAILED: ${what}; got ${JSON.stringify(got)}`);
    process.exit(1);
  }
  passed++;
}

// 1. The model list.
const models = [];
for await (const m of client.models.list()) models.push(m.id);
check('models.list() gives the served model', models.length === 1 && models[0] === 'tool-model', models);

// 2. A plain chat answer.
const hi = await client.chat.completions.create(ask('Say hi.'));
check('a chat answer is its text', hi.choices[0].message.content === 'Hi!' &&
      hi.choices[0].finish_reason === 'stop' && !hi.choices[0].message.tool_calls, hi.choices[0]);

// 3. The same streamed: the deltas add up to it.
let text = '';
for await (const chunk of await client.chat.completions.create({ ...ask('Say hi.'), stream: true })) {
  text += chunk.choices[0]?.delta?.content ?? '';
}
check('streamed deltas add up to the answer', text === 'Hi!', text);

// 4. A tool call.
const call = await client.chat.completions.create(ask('What is 2 + 3?'));
const msg = call.choices[0].message;
check('a tool call comes back as tool_calls', call.choices[0].finish_reason === 'tool_calls' &&
      msg.tool_calls?.length === 1 && msg.tool_calls[0].function.name === 'add' &&
      JSON.stringify(JSON.parse(msg.tool_calls[0].function.arguments)) === '{"a":2,"b":3}', call.choices[0]);

// 5. The same streamed through the SDK's stream helper, which accumulates tool-call deltas
// (`beta.chat.completions.stream` in the 4.x client pinned for Node 18, Debian 12's).
const completions = client.chat.completions.stream ? client.chat.completions : client.beta.chat.completions;
const runner = completions.stream(ask('What is 2 + 3?'));
const final = await runner.finalChatCompletion();
const fm = final.choices[0].message;
check('the stream helper assembles the same call', fm.tool_calls?.length === 1 &&
      fm.tool_calls[0].function.name === 'add' &&
      fm.tool_calls[0].function.arguments === msg.tool_calls[0].function.arguments, final.choices[0]);

// 6. Parallel calls with text before them.
const both = (await client.chat.completions.create(ask('2 + 3 and 4 * 5?'))).choices[0].message;
check('text and two calls', both.content === 'Both.' && both.tool_calls?.length === 2 &&
      both.tool_calls[1].function.name === 'mul', both);

// 7. The conversation goes on with the returned message and the tool's result.
const next = await client.chat.completions.create({
  model: 'tool-model', temperature: 0, max_tokens: 40, tools,
  messages: [{ role: 'user', content: 'What is 2 + 3?' }, msg,
             { role: 'tool', tool_call_id: msg.tool_calls[0].id, content: '5' }],
});
check('the result of the call continues the chat', next.choices[0].message.content === 'It is 5.', next.choices[0]);

// 8. A named tool_choice.
const named = await client.chat.completions.create(
  ask('Multiply.', { tool_choice: { type: 'function', function: { name: 'mul' } } }));
check('a named tool_choice calls it', named.choices[0].message.tool_calls?.[0]?.function.arguments ===
      '{"a": 6, "b": 7}', named.choices[0]);

// 9. A bad request is the SDK's BadRequestError with the field named.
try {
  await client.chat.completions.create(ask('hi', { tool_choice: 'always' }));
  check('a bad tool_choice is refused', false, 'accepted');
} catch (e) {
  check('a bad tool_choice is a 400 naming it', e instanceof OpenAI.BadRequestError &&
        e.status === 400 && e.param === 'tool_choice', { status: e.status, param: e.param, message: e.message });
}
console.log(`openai-sdk-check: ${passed} checks passed`);
