"""Write the mock's generated answers as oracle fixtures.

Asks a running `demandflow mock` (its URL is the first argument) for each
API's answer to four requests — plain, with a tool, with reasoning, with
both — and writes them to the directory given second as `9NN_gen_*.sse`
with an `expected.json` naming the API, so `oracle.py DIR` can run the
official SDKs' readers over what the generator sends:

    target/debug/demandflow mock --addr 127.0.0.1:0 > /tmp/mock.url &
    python3 stages/tests/sdk_oracle/generated.py "$(head -1 /tmp/mock.url)" /tmp/gen
    /tmp/sdk-oracle/bin/python stages/tests/sdk_oracle/oracle.py /tmp/gen
"""
import json
import os
import sys
import urllib.request

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"]}


def chat(reason, tool):
    b = {"model": "m", "stream": True, "stream_options": {"include_usage": True},
         "messages": [{"role": "user", "content": "hi"}]}
    if reason:
        b["reasoning_effort"] = "low"
    if tool:
        b["tools"] = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
    return b


def responses(reason, tool):
    b = {"model": "m", "stream": True, "input": "hi"}
    if reason:
        b["reasoning"] = {"effort": "low", "summary": "auto"}
    if tool:
        b["tools"] = [{"type": "function", "name": "get_weather", "parameters": SCHEMA}]
    return b


def anthropic(reason, tool):
    b = {"model": "m", "stream": True, "max_tokens": 2048, "messages": [{"role": "user", "content": "hi"}]}
    if reason:
        b["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    if tool:
        b["tools"] = [{"name": "get_weather", "input_schema": SCHEMA}]
    return b


def gemini(reason, tool):
    b = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    if reason:
        b["generationConfig"] = {"thinkingConfig": {"includeThoughts": True}}
    if tool:
        b["tools"] = [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": SCHEMA}]}]
    return b


CASES = [
    ("openai-chat", "/v1/chat/completions", chat),
    ("openai-responses", "/v1/responses", responses),
    ("anthropic-messages", "/v1/messages", anthropic),
    ("gemini", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", gemini),
]


def main():
    url, out = sys.argv[1].rstrip("/"), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    n = 0
    for api, path, body in CASES:
        for reason in (False, True):
            for tool in (False, True):
                n += 1
                name = f"9{n:02d}_gen_{api.replace('-', '_')}{'_reasoning' if reason else ''}{'_tool' if tool else ''}"
                req = urllib.request.Request(url + path, data=json.dumps(body(reason, tool)).encode(),
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req) as r:
                    data = r.read()
                with open(os.path.join(out, name + ".sse"), "wb") as f:
                    f.write(data)
                with open(os.path.join(out, name + ".expected.json"), "w") as f:
                    json.dump({"api": api}, f)
    print(f"{n} generated transcripts in {out}")


if __name__ == "__main__":
    main()
