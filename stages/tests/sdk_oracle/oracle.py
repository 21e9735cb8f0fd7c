#!/usr/bin/env python3
"""Differential check: every SSE fixture through the official Python SDK's own
stream accumulator (served by a mock HTTP transport) and through
`demandflow replay`; prints what agrees and what differs.

    python oracle.py --demandflow target/debug/demandflow [--json] [DIR ...]

DIR defaults to stages/tests/fixtures/sse and, when present, the shared
fixtures. Exit status 0 when every difference is a documented one (see
KNOWN below and docs/providers.md), 1 otherwise.
"""
import argparse
import json
import os
import subprocess
import sys

try:
    import httpx2 as httpx  # what the pinned SDKs import
except ImportError:  # older SDK releases
    import httpx

import base64

import anthropic
import openai
from google import genai
from google.genai import types as genai_types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


def client_kwargs(body):
    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return dict(
        api_key="sk-oracle",
        base_url="http://oracle.invalid/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )


def dump(obj):
    """A pydantic model or plain value as plain JSON data."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, list):
        return [dump(o) for o in obj]
    return obj


def parse_args_json(text):
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError as e:
        return {"<invalid>": text, "error": str(e)}


def empty():
    return {
        "text": "", "reasoning": [], "refusal": None, "tool_calls": [], "server_tools": [],
        "citations": [], "usage": None, "stop_reason": None, "outcome": "ok",
    }


# ---------------------------------------------------------------- Anthropic
def sdk_anthropic(body):
    out = empty()
    client = anthropic.Anthropic(**{k: v for k, v in client_kwargs(body).items() if k != "base_url"},
                                 base_url="http://oracle.invalid")
    message = None
    try:
        with client.messages.stream(model="m", max_tokens=1024, messages=[{"role": "user", "content": "hi"}]) as s:
            for _ in s:
                pass
            message = s.get_final_message()
    except Exception as e:  # noqa: BLE001 - the SDK's verdict is the datum
        out["outcome"] = f"{type(e).__name__}: {e}"[:160]
        return out
    for block in message.content:
        t = block.type
        if t == "text":
            out["text"] += block.text
            for c in block.citations or []:
                out["citations"].append(dump(c))
        elif t == "thinking":
            r = {"text": block.thinking}
            if block.signature:
                r["signature"] = block.signature
            out["reasoning"].append(r)
        elif t == "redacted_thinking":
            out["reasoning"].append({"text": "", "redacted": block.data})
        elif t == "tool_use":
            out["tool_calls"].append({"id": block.id, "name": block.name, "kind": "function", "arguments": block.input})
        elif t in ("server_tool_use", "mcp_tool_use"):
            out["server_tools"].append({"type": "call", "id": block.id, "name": block.name, "input": block.input})
        elif t.endswith("_tool_result"):
            out["server_tools"].append({"type": "result", "tool_use_id": block.tool_use_id, "kind": t})
    u = message.usage
    out["usage"] = [u.input_tokens, u.output_tokens]
    out["stop_reason"] = message.stop_reason
    return out


# ---------------------------------------------------------------- Chat
def sdk_chat(body):
    out = empty()
    client = openai.OpenAI(**client_kwargs(body))
    try:
        with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}]) as s:
            for _ in s:
                pass
            try:
                completion = s.get_final_completion()
            except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as e:
                # The parse helper refuses these finish reasons; the
                # accumulated completion is on the exception.
                completion = e.completion
                out["outcome"] = "ok: " + type(e).__name__
    except Exception as e:  # noqa: BLE001
        out["outcome"] = f"{type(e).__name__}: {e}"[:160]
        return out
    if completion.usage:
        out["usage"] = [completion.usage.prompt_tokens, completion.usage.completion_tokens]
    choice = next((c for c in completion.choices if c.index == 0), None)
    if choice is None:
        return out
    m = choice.message
    out["text"] = m.content or ""
    out["refusal"] = m.refusal
    extra = m.model_extra or {}
    reasoning = extra.get("reasoning_content") or extra.get("reasoning")
    if reasoning:
        out["reasoning"].append({"text": reasoning})
    for call in m.tool_calls or []:
        out["tool_calls"].append({"id": call.id or "", "name": call.function.name, "kind": "function",
                                  "arguments": parse_args_json(call.function.arguments or "")})
    fc = getattr(m, "function_call", None)
    if fc is not None:
        out["tool_calls"].append({"id": "", "name": fc.name, "kind": "function",
                                  "arguments": parse_args_json(fc.arguments or "")})
    out["stop_reason"] = choice.finish_reason
    return out


# ---------------------------------------------------------------- Responses
SERVER_ITEMS = {"web_search_call", "file_search_call", "code_interpreter_call",
                "image_generation_call", "mcp_call", "mcp_list_tools"}


def sdk_responses(body):
    out = empty()
    client = openai.OpenAI(**client_kwargs(body))
    response = None
    try:
        with client.responses.stream(model="m", input="hi") as s:
            for event in s:
                if event.type in ("response.incomplete", "response.failed"):
                    response = event.response
                    out["outcome"] = event.type
            if response is None:
                response = s.get_final_response()
    except Exception as e:  # noqa: BLE001
        out["outcome"] = f"{type(e).__name__}: {e}"[:160]
        if response is None:
            return out
    for item in response.output or []:
        t = item.type
        if t == "message":
            for part in item.content:
                if part.type == "output_text":
                    out["text"] += part.text
                    out["citations"] += [dump(a) for a in part.annotations or []]
                elif part.type == "refusal":
                    out["refusal"] = (out["refusal"] or "") + part.refusal
        elif t == "reasoning":
            r = {"id": item.id, "text": "".join(s.text for s in item.summary or [])
                 + "".join(c.text for c in item.content or [])}
            if item.encrypted_content:
                r["signature"] = item.encrypted_content
            out["reasoning"].append(r)
        elif t == "function_call":
            out["tool_calls"].append({"id": item.call_id, "name": item.name, "kind": "function",
                                      "arguments": parse_args_json(item.arguments)})
        elif t == "custom_tool_call":
            out["tool_calls"].append({"id": item.call_id, "name": item.name, "kind": "custom", "arguments": item.input})
        elif t in SERVER_ITEMS:
            name = t[:-5] if t.endswith("_call") else t
            out["server_tools"].append({"type": "call", "id": item.id, "name": name, "input": dump(item)})
    if response.usage:
        out["usage"] = [response.usage.input_tokens, response.usage.output_tokens]
    if response.incomplete_details:
        out["stop_reason"] = response.incomplete_details.reason
    return out


# ---------------------------------------------------------------- Gemini
def sdk_gemini(body):
    """google-genai's own reading of each chunk (its pydantic types, its
    `.text` and `.function_calls`), accumulated the way docs/providers.md
    says the project numbers blocks: a run of thought parts is one reasoning
    block, a signature on another part is a block of its own (empty text)."""
    out = empty()

    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = genai.Client(api_key="oracle-key", http_options=genai_types.HttpOptions(
        base_url="http://oracle.invalid",
        httpx_client=httpx.Client(transport=httpx.MockTransport(handler)),
    ))
    calls, reasoning, run = 0, [], None
    usage = stop = None
    try:
        for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
            out["text"] += chunk.text or ""
            if chunk.prompt_feedback and chunk.prompt_feedback.block_reason:
                stop = chunk.prompt_feedback.block_reason.value
            if chunk.usage_metadata:
                u = chunk.usage_metadata
                usage = [(u.prompt_token_count or 0) + (u.tool_use_prompt_token_count or 0),
                         (u.candidates_token_count or 0) + (u.thoughts_token_count or 0)]
            candidate = next((c for c in chunk.candidates or [] if (c.index or 0) == 0), None)
            if candidate is None:
                continue
            for part in (candidate.content.parts if candidate.content else None) or []:
                sig = base64.b64encode(part.thought_signature).decode() if part.thought_signature else None
                if part.function_call is not None:
                    fc = part.function_call
                    out["tool_calls"].append({"id": fc.id or f"gemini-call-{calls}", "name": fc.name or "",
                                              "kind": "function", "arguments": fc.args or {}})
                    calls += 1
                    run = None
                    if sig:
                        reasoning.append({"text": "", "signature": sig})
                elif part.thought:
                    if run != "thought":
                        reasoning.append({"text": ""})
                        run = "thought"
                    reasoning[-1]["text"] += part.text or ""
                    if sig:
                        reasoning[-1]["signature"] = sig
                elif part.text is not None:
                    if run != "text":
                        run = "text"
                    if sig:
                        reasoning.append({"text": "", "signature": sig})
            if candidate.citation_metadata:
                for c in candidate.citation_metadata.citations or []:
                    out["citations"].append(dict(c.model_dump(mode="json", by_alias=True, exclude_none=True), type="citation_source"))
            if candidate.grounding_metadata:
                for c in candidate.grounding_metadata.grounding_chunks or []:
                    out["citations"].append(dict(c.model_dump(mode="json", by_alias=True, exclude_none=True), type="grounding_chunk"))
            if candidate.finish_reason:
                stop = candidate.finish_reason.value
    except Exception as e:  # noqa: BLE001 - the SDK's verdict is the datum
        out["outcome"] = f"{type(e).__name__}: {e}"[:160]
        return out
    out["reasoning"] = reasoning
    out["usage"] = usage
    out["stop_reason"] = stop
    return out


SDK = {"anthropic-messages": sdk_anthropic, "openai-chat": sdk_chat, "openai-responses": sdk_responses,
       "gemini": sdk_gemini}


# ---------------------------------------------------------------- ours
def ours(binary, api, path):
    run = subprocess.run([binary, "replay", "--api", api, path], capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    summary = lines[-1]["summary"]
    events = lines[:-1]
    out = empty()
    out["text"] = summary["text"]
    out["reasoning"] = [{k: v for k, v in r.items() if k != "index"} for r in summary["reasoning"]]
    out["refusal"] = summary["refusal"]
    out["tool_calls"] = [
        {"id": c["id"], "name": c["name"], "kind": c["kind"],
         "arguments": c["arguments"] if "arguments" in c else {"<invalid>": c["raw"], "error": c["error"]}}
        for c in summary["tool_calls"]
    ]
    for e in events:
        if e["type"] == "server_tool_call":
            out["server_tools"].append({"type": "call", "id": e["id"], "name": e["name"], "input": e["input"]})
        elif e["type"] == "server_tool_result":
            out["server_tools"].append({"type": "result", "tool_use_id": e["tool_use_id"], "kind": e["kind"]})
        elif e["type"] == "citation":
            out["citations"].append(e["citation"])
    u = summary["usage"]
    out["usage"] = None if u is None else [u["input_tokens"], u["output_tokens"]]
    out["stop_reason"] = summary["stop_reason"]
    out["outcome"] = summary["status"]
    out["errors"] = [e["kind"] for e in events if e["type"] == "error"]
    return out


def compare(api, sdk, mine):
    """The fields that differ, and how the outcomes relate."""
    diffs = {}
    sdk_failed = not (sdk["outcome"].startswith("ok") or sdk["outcome"] == "response.incomplete")
    if sdk_failed:
        # No final message to compare: only the verdicts.
        if mine["outcome"] not in ("failed", "truncated"):
            diffs["outcome"] = (sdk["outcome"], mine["outcome"])
        return diffs, "sdk raised: " + sdk["outcome"]
    for key in ("text", "reasoning", "refusal", "tool_calls", "server_tools", "citations", "usage", "stop_reason"):
        if api == "openai-chat" and key == "reasoning" and not sdk[key] and not mine[key]:
            continue
        if sdk[key] != mine[key]:
            diffs[key] = (sdk[key], mine[key])
    if mine["outcome"] in ("failed", "truncated"):
        diffs["outcome"] = ("ok", mine["outcome"])
    return diffs, None


# Fixtures where the SDK departs from the wire spec and the project keeps its
# own behaviour (docs/providers.md, "Where the official SDKs differ").
KNOWN = {
    "05_sse_comments_multiline_ids": "SDK dispatches SSE blocks with no data: line / keeps a leading BOM",
    "22_openai_responses_tool_call_error": "Responses SDK reads past an `error` event",
    "25_openai_chat_truncated": "SDK reports success on a stream cut before its terminal event",
    "27_anthropic_truncated": "SDK reports success on a stream cut before its terminal event",
    "28_openai_responses_truncated_utf8": "SDK reports success on a stream cut before its terminal event",
    "43_anthropic_tool_use_cut_by_max_tokens": "Anthropic SDK parses cut tool input in partial mode, dropping the unfinished field",
    "66_gemini_truncated": "SDK reports success on a stream cut before any finishReason (Gemini has no terminal event)",
    "68_gemini_malformed_function_call": "google-genai returns the chunk as is (no error) for finishReason MALFORMED_FUNCTION_CALL; we end failed",
}


CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
STOP = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
RESP = b'"response":{"id":"r","object":"response","created_at":1,"status":"%s","model":"m","output":[],"usage":null}'

# Synthetic transcripts for each documented difference: (name, api, body).
DIFFERENCES = [
    ("leading BOM before the first data line", "openai-chat", b"\xef\xbb\xbf" + CHUNK + STOP + b"data: [DONE]\n\n"),
    ("SSE block with no data: line", "openai-chat", CHUNK + b"id: 7\n\n" + STOP + b"data: [DONE]\n\n"),
    ("stream cut before its terminal event", "openai-chat", CHUNK + STOP),
    ("Responses `error` event followed by more events", "openai-responses",
     b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0," + (RESP % b"in_progress") + b"}\n\n"
     + b'event: error\ndata: {"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":1}\n\n'
     + b"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2," + (RESP % b"completed") + b"}\n\n"),
]


def differences(binary):
    import tempfile
    rows = []
    for name, api, body in DIFFERENCES:
        with tempfile.NamedTemporaryFile(suffix=".sse", delete=False) as f:
            f.write(body)
        try:
            sdk = SDK[api](body)
            mine = ours(binary, api, f.name)
        finally:
            os.unlink(f.name)
        rows.append({"case": name, "api": api, "sdk": sdk["outcome"], "sdk_text": sdk["text"],
                     "ours": mine["outcome"], "ours_text": mine["text"], "ours_errors": mine["errors"]})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demandflow", default=os.path.join(ROOT, "target", "debug", "demandflow"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("dirs", nargs="*")
    args = ap.parse_args()
    dirs = args.dirs or [os.path.join(ROOT, "stages", "tests", "fixtures", "sse"),
                         os.path.normpath(os.path.join(ROOT, "..", "..", "shared", "fixtures", "sse"))]
    seen = {}
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".sse") and name[:-4] not in seen:
                seen[name[:-4]] = os.path.join(d, name)
    report, unexplained = [], 0
    for name, path in sorted(seen.items()):
        expected = json.load(open(path[:-4] + ".expected.json"))
        api = expected["api"]
        body = open(path, "rb").read()
        sdk = SDK[api](body)
        mine = ours(args.demandflow, api, path)
        diffs, note = compare(api, sdk, mine)
        verdict = "agree" if not diffs else ("known" if name in KNOWN else "DIFFER")
        if verdict == "DIFFER":
            unexplained += 1
        report.append({"fixture": name, "api": api, "verdict": verdict, "ours": mine["outcome"],
                       "sdk": sdk["outcome"], "note": KNOWN.get(name) or note, "diffs": diffs})
    diff_rows = differences(args.demandflow)
    if args.json:
        json.dump({"fixtures": report, "differences": diff_rows}, sys.stdout, indent=1)
        print()
    else:
        for r in report:
            print(f'{r["verdict"]:6} {r["fixture"]:48} ours={r["ours"]:10} sdk={r["sdk"][:60]}')
            if r["verdict"] != "agree":
                if r["note"]:
                    print(f'       note: {r["note"]}')
                for k, (a, b) in r["diffs"].items():
                    print(f"       {k}: sdk={json.dumps(a)[:150]} ours={json.dumps(b)[:150]}")
        print("documented differences (synthetic transcripts):")
        for d in diff_rows:
            print(f'  {d["case"]:48} sdk={d["sdk"][:50]!r} text={d["sdk_text"]!r}; '
                  f'ours={d["ours"]} text={d["ours_text"]!r} errors={d["ours_errors"]}')
        print(f"{len(report)} fixtures, {sum(r['verdict'] == 'agree' for r in report)} agree, "
              f"{sum(r['verdict'] == 'known' for r in report)} known differences, {unexplained} unexplained")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
