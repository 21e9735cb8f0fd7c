"""Writes the issue 11 fixtures (20, 21, 28, 30-43 and Gemini 60-69): SSE transcripts shaped
as the real APIs send them (shapes taken from the official SDKs' event
types), each with its .expected.json. Deterministic; re-running it over the
fixture directory must leave git clean:

    python3 stages/tests/sdk_oracle/make_fixtures.py stages/tests/fixtures/sse
"""
import json, sys, os
OUT = sys.argv[1]

def dump(o): return json.dumps(o, separators=(",", ":"), ensure_ascii=False)

def write(name, events, expected, crlf=False):
    body = ""
    for ev in events:
        if isinstance(ev, str):
            body += ev
            continue
        name_, data = ev
        if name_ is not None:
            body += f"event: {name_}\n"
        body += f"data: {data if isinstance(data, str) else dump(data)}\n\n"
    open(os.path.join(OUT, name + ".sse"), "w").write(body)
    open(os.path.join(OUT, name + ".expected.json"), "w").write(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")

# ---------- OpenAI Responses ----------
class Resp:
    def __init__(self, rid, model="gpt-5-mini-2025-08-07"):
        self.rid, self.model, self.seq, self.events = rid, model, 0, []
        self.output = []
    def base(self, status, output=None, usage=None, error=None, incomplete=None):
        return {"id": self.rid, "object": "response", "created_at": 1767225600, "status": status,
                "background": False, "error": error, "incomplete_details": incomplete,
                "instructions": None, "max_output_tokens": None, "model": self.model,
                "output": output if output is not None else [], "parallel_tool_calls": True,
                "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
                "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
                "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
                "usage": usage, "user": None, "metadata": {}}
    def ev(self, ty, **fields):
        d = {"type": ty}
        d.update(fields)
        d["sequence_number"] = self.seq
        self.seq += 1
        self.events.append((ty, d))
    def start(self):
        self.ev("response.created", response=self.base("in_progress"))
        self.ev("response.in_progress", response=self.base("in_progress"))
    def message(self, idx, mid, chunks, annotations=(), refusal=False, status="completed", finish=True):
        self.ev("response.output_item.added", output_index=idx, item={"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"})
        if refusal:
            part0 = {"type": "refusal", "refusal": ""}
        else:
            part0 = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        self.ev("response.content_part.added", item_id=mid, output_index=idx, content_index=0, part=part0)
        text = ""
        for c in chunks:
            if isinstance(c, dict):
                self.ev("response.output_text.annotation.added", item_id=mid, output_index=idx, content_index=0, annotation_index=c.pop("_n"), annotation=c)
                continue
            text += c
            if refusal:
                self.ev("response.refusal.delta", item_id=mid, output_index=idx, content_index=0, delta=c)
            else:
                self.ev("response.output_text.delta", item_id=mid, output_index=idx, content_index=0, delta=c, logprobs=[])
        if not finish:
            return text
        if refusal:
            self.ev("response.refusal.done", item_id=mid, output_index=idx, content_index=0, refusal=text)
            part = {"type": "refusal", "refusal": text}
        else:
            self.ev("response.output_text.done", item_id=mid, output_index=idx, content_index=0, text=text, logprobs=[])
            part = {"type": "output_text", "annotations": list(annotations), "logprobs": [], "text": text}
        self.ev("response.content_part.done", item_id=mid, output_index=idx, content_index=0, part=part)
        item = {"id": mid, "type": "message", "status": status, "content": [part], "role": "assistant"}
        self.ev("response.output_item.done", output_index=idx, item=item)
        self.output.append(item)
        return text
    def function_call(self, idx, fid, call_id, name, chunks):
        self.ev("response.output_item.added", output_index=idx, item={"id": fid, "type": "function_call", "status": "in_progress", "arguments": "", "call_id": call_id, "name": name})
        for c in chunks:
            self.ev("response.function_call_arguments.delta", item_id=fid, output_index=idx, delta=c)
        args = "".join(chunks)
        self.ev("response.function_call_arguments.done", item_id=fid, output_index=idx, name=name, arguments=args)
        item = {"id": fid, "type": "function_call", "status": "completed", "arguments": args, "call_id": call_id, "name": name}
        self.ev("response.output_item.done", output_index=idx, item=item)
        self.output.append(item)
    def custom_call(self, idx, cid, call_id, name, chunks):
        self.ev("response.output_item.added", output_index=idx, item={"id": cid, "type": "custom_tool_call", "status": "in_progress", "call_id": call_id, "input": "", "name": name})
        for c in chunks:
            self.ev("response.custom_tool_call_input.delta", item_id=cid, output_index=idx, delta=c)
        inp = "".join(chunks)
        self.ev("response.custom_tool_call_input.done", item_id=cid, output_index=idx, input=inp)
        item = {"id": cid, "type": "custom_tool_call", "status": "completed", "call_id": call_id, "input": inp, "name": name}
        self.ev("response.output_item.done", output_index=idx, item=item)
        self.output.append(item)
    def reasoning(self, idx, rid, parts, encrypted):
        self.ev("response.output_item.added", output_index=idx, item={"id": rid, "type": "reasoning", "summary": [], "encrypted_content": None})
        summary = []
        for si, chunks in enumerate(parts):
            self.ev("response.reasoning_summary_part.added", item_id=rid, output_index=idx, summary_index=si, part={"type": "summary_text", "text": ""})
            for c in chunks:
                self.ev("response.reasoning_summary_text.delta", item_id=rid, output_index=idx, summary_index=si, delta=c)
            t = "".join(chunks)
            self.ev("response.reasoning_summary_text.done", item_id=rid, output_index=idx, summary_index=si, text=t)
            self.ev("response.reasoning_summary_part.done", item_id=rid, output_index=idx, summary_index=si, part={"type": "summary_text", "text": t})
            summary.append({"type": "summary_text", "text": t})
        item = {"id": rid, "type": "reasoning", "summary": summary, "encrypted_content": encrypted}
        self.ev("response.output_item.done", output_index=idx, item=item)
        self.output.append(item)
    def web_search(self, idx, wid, query):
        self.ev("response.output_item.added", output_index=idx, item={"id": wid, "type": "web_search_call", "status": "in_progress"})
        self.ev("response.web_search_call.in_progress", item_id=wid, output_index=idx)
        self.ev("response.web_search_call.searching", item_id=wid, output_index=idx)
        self.ev("response.web_search_call.completed", item_id=wid, output_index=idx)
        item = {"id": wid, "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": query}}
        self.ev("response.output_item.done", output_index=idx, item=item)
        self.output.append(item)
        return item
    def usage(self, i, o, r=0):
        return {"input_tokens": i, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": o, "output_tokens_details": {"reasoning_tokens": r}, "total_tokens": i + o}
    def completed(self, i, o, r=0):
        self.ev("response.completed", response=self.base("completed", self.output, self.usage(i, o, r)))
    def incomplete(self, reason, i, o):
        self.ev("response.incomplete", response=self.base("incomplete", self.output, self.usage(i, o), incomplete={"reason": reason}))
    def failed(self, code, message):
        self.ev("response.failed", response=self.base("failed", self.output, None, error={"code": code, "message": message}))

def exp(api, status, usage, stop_reason, text, about, **extra):
    e = {"api": api, "status": status, "usage": None if usage is None else {"input_tokens": usage[0], "output_tokens": usage[1]},
         "stop_reason": stop_reason, "about": about, "text": text}
    e.update(extra)
    return e

R = "openai-responses"; C = "openai-chat"; A = "anthropic-messages"

# 20: incomplete (made faithful: item/part added; reasoning item of its own)
r = Resp("resp_x20", "gpt-4.1-mini")
r.start()
r.reasoning(0, "rs_x20", [["thinking that must not leak"]], None)
r.ev("response.output_item.added", output_index=1, item={"id": "msg_x20", "type": "message", "status": "in_progress", "content": [], "role": "assistant"})
r.ev("response.content_part.added", item_id="msg_x20", output_index=1, content_index=0, part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
for c in ["Bounded", " buffers", " keep", " memory"]:
    r.ev("response.output_text.delta", item_id="msg_x20", output_index=1, content_index=0, delta=c, logprobs=[])
r.ev("response.some_future_event", payload={"x": 1})
part = {"type": "output_text", "annotations": [], "logprobs": [], "text": "Bounded buffers keep memory"}
r.ev("response.output_text.done", item_id="msg_x20", output_index=1, content_index=0, text=part["text"], logprobs=[])
r.ev("response.content_part.done", item_id="msg_x20", output_index=1, content_index=0, part=part)
item = {"id": "msg_x20", "type": "message", "status": "incomplete", "content": [part], "role": "assistant"}
r.ev("response.output_item.done", output_index=1, item=item)
r.output.append(item)
r.incomplete("max_output_tokens", 15, 4)
write("20_openai_responses_incomplete", r.events, exp(R, "incomplete", (15, 4), "max_output_tokens", "Bounded buffers keep memory",
  "Responses stream cut by max_output_tokens: response.incomplete with incomplete_details.reason is the terminal event (status incomplete, reason reported as stop_reason). The reasoning item's summary is reasoning, never text; an unknown event type is skipped. Every item and part is announced (output_item.added, content_part.added) as the real API does.",
  final={"reasoning": [{"index": 0, "id": "rs_x20", "text": "thinking that must not leak"}]}))

# 21: failed
r = Resp("resp_x21", "gpt-4.1-mini")
r.start()
r.message(0, "msg_x21", ["Half an ans"], finish=False)
r.failed("server_error", "The server had an error while processing your request.")
write("21_openai_responses_failed", r.events, exp(R, "failed", None, None, "Half an ans",
  "Responses stream ending with response.failed (error.code server_error, usage null): an error event then Done failed; text already streamed is kept. The message item and its part are announced first, as the real API does.",
  errors=["server_error"]))

# 28: truncated utf8
r = Resp("resp_x28", "gpt-4.1-mini")
r.start()
r.message(0, "msg_x28", ["Grøn ", "✓ ", "🚀"], finish=False)
write("28_openai_responses_truncated_utf8", r.events, exp(R, "truncated", None, None, "Grøn ✓ 🚀",
  "Responses body ends cleanly after a delta but without response.completed: truncated. Deltas hold 2-, 3- and 4-byte UTF-8 characters, which small chunkings split."))

# 31: parallel function calls
r = Resp("resp_x31", "gpt-4.1-2025-04-14")
r.start()
r.function_call(0, "fc_x31a", "call_x31a", "get_weather", ['{"', 'city', '":"', 'Oslo', '"}'])
r.function_call(1, "fc_x31b", "call_x31b", "get_weather", ['{"city":', '"Bergen', '"}'])
r.completed(62, 38)
write("31_openai_responses_parallel_tool_calls", r.events, exp(R, "completed", (62, 38), None, "",
  "Responses parallel function calls: two function_call items (output_index 0 and 1), each announced by output_item.added with call_id and name, arguments streamed as function_call_arguments.delta, finished by output_item.done; each becomes a tool_call event with parsed arguments after its deltas.",
  tool_calls=[{"index": 0, "id": "call_x31a", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
              {"index": 1, "id": "call_x31b", "name": "get_weather", "arguments": '{"city":"Bergen"}'}],
  final={"tool_calls": [
      {"index": 0, "id": "call_x31a", "name": "get_weather", "kind": "function", "finished": True, "arguments": {"city": "Oslo"}},
      {"index": 1, "id": "call_x31b", "name": "get_weather", "kind": "function", "finished": True, "arguments": {"city": "Bergen"}}]}))

# 33: custom tool call
r = Resp("resp_x33", "gpt-5-2025-08-07")
r.start()
r.custom_call(0, "ctc_x33", "call_x33", "code_exec", ["print(", "\"hello", " world\")"])
r.completed(70, 21)
write("33_openai_responses_custom_tool_call", r.events, exp(R, "completed", (70, 21), None, "",
  "Responses custom (free-form) tool call: a custom_tool_call item whose plain-text input streams as response.custom_tool_call_input.delta; it is a client tool call of kind custom whose arguments are the raw input as a JSON string.",
  tool_calls=[{"index": 0, "id": "call_x33", "name": "code_exec", "arguments": 'print("hello world")'}],
  final={"tool_calls": [{"index": 0, "id": "call_x33", "name": "code_exec", "kind": "custom", "finished": True, "arguments": 'print("hello world")'}]}))

# 36: reasoning summary with encrypted content
r = Resp("resp_x36", "o4-mini-2025-04-16")
r.start()
r.reasoning(0, "rs_x36", [["**Plan**\n\n", "Compare the ", "two numbers."], ["Nine is larger."]], "gAAAAABo_x36encryptedreasoning==")
r.message(1, "msg_x36", ["9.11 < ", "9.9"])
r.completed(18, 140, 128)
write("36_openai_responses_reasoning_summary", r.events, exp(R, "completed", (18, 140), None, "9.11 < 9.9",
  "Responses reasoning item with two summary parts (reasoning_summary_text.delta) and encrypted_content on output_item.done (requested with include reasoning.encrypted_content): reasoning deltas carrying the item id, then its signature; the summary never reaches the text. Summary parts are concatenated.",
  final={"reasoning": [{"index": 0, "id": "rs_x36", "text": "**Plan**\n\nCompare the two numbers.Nine is larger.", "signature": "gAAAAABo_x36encryptedreasoning=="}]}))

# 38: refusal
r = Resp("resp_x38", "gpt-4o-2024-08-06")
r.start()
r.message(0, "msg_x38", ["I'm sorry, ", "I can't help ", "with that."], refusal=True)
r.completed(31, 9)
write("38_openai_responses_refusal", r.events, exp(R, "refused", (31, 9), None, "",
  "Responses refusal: the message's content part is a refusal streamed as response.refusal.delta; the response completes, but the outcome is refused, not success, and the refusal text is not answer text.",
  final={"refusal": "I'm sorry, I can't help with that."}))

# 42: web search + url citations
r = Resp("resp_x42", "gpt-4.1-2025-04-14")
r.start()
r.web_search(0, "ws_x42", "demand-driven streaming genstage")
ann = {"type": "url_citation", "start_index": 0, "end_index": 29, "title": "GenStage", "url": "https://hexdocs.pm/gen_stage/GenStage.html"}
a2 = dict(ann); a2["_n"] = 0
r.message(1, "msg_x42", ["GenStage exchanges ", "demand upstream.", a2], annotations=[ann])
r.completed(312, 45)
write("42_openai_responses_web_search_citations", r.events, exp(R, "completed", (312, 45), None, "GenStage exchanges demand upstream.",
  "Responses built-in web search: a web_search_call item (progress events skipped) becomes server tool activity, never a client tool call; the message's url_citation arrives as response.output_text.annotation.added and becomes a citation.",
  final={"tool_calls": [], "server_tools": [{"type": "call", "index": 0, "id": "ws_x42", "name": "web_search",
         "input": {"id": "ws_x42", "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "demand-driven streaming genstage"}}}],
         "citations": [ann]}))

# ---------- OpenAI Chat ----------
class Chat:
    def __init__(self, cid, model="gpt-4.1-mini-2025-04-14", fp="fp_x"):
        self.cid, self.model, self.fp, self.events = cid, model, fp, []
    def chunk(self, delta=None, finish=None, usage=None, choices=True, extra=None):
        d = {"id": self.cid, "object": "chat.completion.chunk", "created": 1767225600, "model": self.model,
             "service_tier": "default", "system_fingerprint": self.fp}
        d["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}] if choices else []
        d["usage"] = usage
        if extra: d.update(extra)
        self.events.append((None, d))
    def done(self):
        self.events.append((None, "[DONE]"))
    @staticmethod
    def usage(p, c, r=0):
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": r, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

# 30: parallel tool calls
c = Chat("chatcmpl-x30")
c.chunk({"role": "assistant", "content": None, "tool_calls": [{"index": 0, "id": "call_x30a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}], "refusal": None})
for a in ['{"ci', 'ty": "Os', 'lo"}']:
    c.chunk({"tool_calls": [{"index": 0, "function": {"arguments": a}}]})
c.chunk({"tool_calls": [{"index": 1, "id": "call_x30b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]})
for a in ['{"tz', '": "Europe/', 'Oslo"}']:
    c.chunk({"tool_calls": [{"index": 1, "function": {"arguments": a}}]})
c.chunk({}, "tool_calls")
c.chunk(choices=False, usage=Chat.usage(85, 52))
c.done()
write("30_openai_chat_parallel_tool_calls", c.events, exp(C, "completed", (85, 52), "tool_calls", "",
  "Chat parallel tool calls: two tool_calls entries (index 0 and 1), id/type/name on each one's first delta, argument fragments after; finish_reason tool_calls finishes both (tool_call events with parsed arguments), then the usage-only chunk (stream_options.include_usage) and [DONE].",
  tool_calls=[{"index": 0, "id": "call_x30a", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
              {"index": 1, "id": "call_x30b", "name": "get_time", "arguments": '{"tz": "Europe/Oslo"}'}],
  final={"tool_calls": [
      {"index": 0, "id": "call_x30a", "name": "get_weather", "kind": "function", "finished": True, "arguments": {"city": "Oslo"}},
      {"index": 1, "id": "call_x30b", "name": "get_time", "kind": "function", "finished": True, "arguments": {"tz": "Europe/Oslo"}}]}))

# 34: legacy function_call
c = Chat("chatcmpl-x34", "gpt-3.5-turbo-0613", None)
c.chunk({"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": ""}})
for a in ['{\n', '  "location": "', 'Boston, MA"\n', '}']:
    c.chunk({"function_call": {"arguments": a}})
c.chunk({}, "function_call")
c.done()
write("34_openai_chat_legacy_function_call", c.events, exp(C, "completed", None, "function_call", "",
  "Chat's deprecated functions API: delta.function_call (name, then argument fragments, no id, no index) with finish_reason function_call; it is a client tool call of index 0 with an empty id. No usage: the request did not ask for it.",
  tool_calls=[{"index": 0, "id": None, "name": "get_weather", "arguments": '{\n  "location": "Boston, MA"\n}'}],
  final={"tool_calls": [{"index": 0, "id": "", "name": "get_weather", "kind": "function", "finished": True, "arguments": {"location": "Boston, MA"}}]}))

# 37: refusal
c = Chat("chatcmpl-x37", "gpt-4o-2024-08-06")
c.chunk({"role": "assistant", "content": None, "refusal": ""})
for t in ["I'm sorry", ", but I can't", " assist with that."]:
    c.chunk({"refusal": t})
c.chunk({}, "stop")
c.chunk(choices=False, usage=Chat.usage(40, 10))
c.done()
write("37_openai_chat_refusal", c.events, exp(C, "refused", (40, 10), "stop", "",
  "Chat refusal (structured outputs): delta.refusal fragments with content null and finish_reason stop. The refusal is not answer text and the outcome is refused, not completed.",
  final={"refusal": "I'm sorry, but I can't assist with that."}))

# 40: content filter
c = Chat("chatcmpl-x40", "gpt-4o-2024-11-20")
c.chunk({"role": "assistant", "content": "", "refusal": None})
for t in ["Here is", " how"]:
    c.chunk({"content": t})
c.chunk({}, "content_filter")
c.chunk(choices=False, usage=Chat.usage(25, 3))
c.done()
write("40_openai_chat_content_filter", c.events, exp(C, "refused", (25, 3), "content_filter", "Here is how",
  "Chat stream stopped by the content filter (finish_reason content_filter): the text so far is kept, the outcome is refused, distinct from completed and from a token limit (incomplete)."))

# 41: reasoning_content from a compatible server
c = Chat("0f7c-x41", "deepseek-reasoner", "fp_x41")
c.chunk({"role": "assistant", "content": None, "reasoning_content": ""})
for t in ["The user asks", " 2+2. ", "That is 4."]:
    c.chunk({"content": None, "reasoning_content": t})
for t in ["2 + 2", " = 4"]:
    c.chunk({"content": t, "reasoning_content": None})
c.chunk({"content": "", "reasoning_content": None}, "stop", usage={"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42, "completion_tokens_details": {"reasoning_tokens": 22}})
c.done()
write("41_openai_chat_reasoning_content", c.events, exp(C, "completed", (12, 30), "stop", "2 + 2 = 4",
  "A Chat-compatible server (DeepSeek) streams reasoning as delta.reasoning_content before the answer, and usage on the chunk carrying finish_reason: reasoning deltas of index 0, never text.",
  final={"reasoning": [{"index": 0, "text": "The user asks 2+2. That is 4."}]}))

# ---------- Anthropic ----------
class Ant:
    def __init__(self, mid, model="claude-sonnet-4-5-20250929"):
        self.mid, self.model, self.events = mid, model, []
    def ev(self, ty, **f):
        d = {"type": ty}; d.update(f); self.events.append((ty, d))
    def start(self, inp, out=1):
        self.ev("message_start", message={"id": self.mid, "type": "message", "role": "assistant", "model": self.model, "content": [],
              "stop_reason": None, "stop_sequence": None,
              "usage": {"input_tokens": inp, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": out, "service_tier": "standard"}})
    def block(self, i, cb, deltas=()):
        self.ev("content_block_start", index=i, content_block=cb)
        for d in deltas:
            self.ev("content_block_delta", index=i, delta=d)
        self.ev("content_block_stop", index=i)
    def end(self, reason, out, extra_usage=None):
        u = {"output_tokens": out}
        if extra_usage: u.update(extra_usage)
        self.ev("message_delta", delta={"stop_reason": reason, "stop_sequence": None}, usage=u)
        self.ev("message_stop")

def td(t): return {"type": "text_delta", "text": t}
def jd(t): return {"type": "input_json_delta", "partial_json": t}

# 32: web search + citations
a = Ant("msg_x32")
a.start(2680)
a.block(0, {"type": "text", "text": ""}, [td("I'll search for that.")])
a.block(1, {"type": "server_tool_use", "id": "srvtoolu_x32", "name": "web_search", "input": {}}, [jd(""), jd('{"query": "gens'), jd('tage demand"}')])
results = [{"type": "web_search_result", "title": "GenStage", "url": "https://hexdocs.pm/gen_stage/GenStage.html", "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1", "page_age": "April 30, 2025"}]
a.block(2, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_x32", "content": results})
cit = {"type": "web_search_result_location", "cited_text": "Consumers send demand upstream", "url": "https://hexdocs.pm/gen_stage/GenStage.html", "title": "GenStage", "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm"}
a.block(3, {"type": "text", "text": "", "citations": []}, [{"type": "citations_delta", "citation": cit}, td("Consumers send demand upstream.")])
a.end("end_turn", 510, {"input_tokens": 2680, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "server_tool_use": {"web_search_requests": 1}})
write("32_anthropic_web_search_citations", a.events, exp(A, "completed", (2680, 510), "end_turn", "I'll search for that.Consumers send demand upstream.",
  "Anthropic server tool: a server_tool_use block (web_search; input streamed as input_json_delta) and a web_search_tool_result block are server tool activity, never client tool calls; a text block's citations_delta becomes a citation. message_delta usage repeats input_tokens and adds server_tool_use.",
  tool_calls=[],
  final={"tool_calls": [], "server_tools": [
      {"type": "call", "index": 1, "id": "srvtoolu_x32", "name": "web_search", "input": {"query": "genstage demand"}},
      {"type": "result", "index": 2, "tool_use_id": "srvtoolu_x32", "kind": "web_search_tool_result"}], "citations": [cit]}))

# 35: thinking with signature, redacted thinking, tool use
a = Ant("msg_x35", "claude-sonnet-4-5-20250929")
a.start(410)
a.block(0, {"type": "thinking", "thinking": "", "signature": ""}, [{"type": "thinking_delta", "thinking": "The user wants the weather"}, {"type": "thinking_delta", "thinking": " in Oslo; call the tool."}, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}])
a.block(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj"})
a.block(2, {"type": "text", "text": ""}, [td("Checking Oslo.")])
a.block(3, {"type": "tool_use", "id": "toolu_x35", "name": "get_weather", "input": {}}, [jd(""), jd('{"city":'), jd(' "Oslo"}')])
a.end("tool_use", 236)
write("35_anthropic_thinking_signature_tool_use", a.events, exp(A, "completed", (410, 236), "tool_use", "Checking Oslo.",
  "Anthropic extended thinking with tools: a thinking block (thinking_delta, then signature_delta) and a redacted_thinking block, kept with their signature and data so the next turn can send them back; then text and a tool_use whose input_json_delta fragments become one tool_call with parsed arguments at content_block_stop.",
  tool_calls=[{"index": 3, "id": "toolu_x35", "name": "get_weather", "arguments": '{"city": "Oslo"}'}],
  final={"reasoning": [
      {"index": 0, "text": "The user wants the weather in Oslo; call the tool.", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"},
      {"index": 1, "text": "", "redacted": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB5URj"}],
      "tool_calls": [{"index": 3, "id": "toolu_x35", "name": "get_weather", "kind": "function", "finished": True, "arguments": {"city": "Oslo"}}]}))

# 39: stop_reason refusal
a = Ant("msg_x39", "claude-sonnet-4-5-20250929")
a.start(30)
a.block(0, {"type": "text", "text": ""}, [td("Here is an"), td(" overview of")])
a.end("refusal", 12)
write("39_anthropic_refusal_stop_reason", a.events, exp(A, "refused", (30, 12), "refusal", "Here is an overview of",
  "Anthropic streaming classifiers stop a response: message_delta stop_reason refusal. The partial text is kept; the outcome is refused, neither completed nor incomplete."))
print("ok")

# 43: tool_use cut by max_tokens: the input is not valid JSON
a = Ant("msg_x43", "claude-sonnet-4-5-20250929")
a.start(377)
a.block(0, {"type": "tool_use", "id": "toolu_x43", "name": "write_file", "input": {}}, [jd(""), jd('{"path": "notes.md", '), jd('"content": "Demand flows up')])
a.end("max_tokens", 16)
write("43_anthropic_tool_use_cut_by_max_tokens", a.events, exp(A, "incomplete", (377, 16), "max_tokens", "",
  "Anthropic tool_use cut by max_tokens: the block still stops, but its input_json_delta fragments are not valid JSON. The call ends as tool_call_invalid (raw arguments and the parse error; a typed event, not a panic, not a stream failure) and the outcome is incomplete.",
  tool_calls=[{"index": 0, "id": "toolu_x43", "name": "write_file", "arguments": '{"path": "notes.md", "content": "Demand flows up'}],
  final={"tool_calls": [{"index": 0, "id": "toolu_x43", "name": "write_file", "kind": "function", "finished": True,
         "error": "EOF while parsing a string at line 1 column 48", "raw": '{"path": "notes.md", "content": "Demand flows up'}]}))

# ---------- Google Gemini (streamGenerateContent?alt=sse) ----------
# Shapes from google-genai's GenerateContentResponse (camelCase on the
# wire): `data: <json>` lines with CRLF, as the API sends them, no event
# names, no terminal event: the body ends after the chunk with finishReason.
G = "gemini"
GM = "gemini-2.5-flash"

def gdump(o): return json.dumps(o, separators=(", ", ": "), ensure_ascii=False)

def gusage(p, c=None, t=None):
    u = {"promptTokenCount": p}
    if c is not None:
        u["candidatesTokenCount"] = c
    u["totalTokenCount"] = p + (c or 0) + (t or 0)
    u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": p}]
    if t is not None:
        u["thoughtsTokenCount"] = t
    return u

def gchunk(rid, parts=None, finish=None, usage=None, **cand):
    c = {}
    if parts is not None:
        c["content"] = {"parts": parts, "role": "model"}
    if finish is not None:
        c["finishReason"] = finish
    c.update(cand)
    c["index"] = 0
    d = {"candidates": [c]}
    if usage is not None:
        d["usageMetadata"] = usage
    d["modelVersion"] = GM
    d["responseId"] = rid
    return d

def gwrite(name, chunks, expected):
    write(name, ["data: " + gdump(ch) + "\r\n\r\n" for ch in chunks], expected)

# 60: text and usage (thoughts counted as output)
rid = "x60RvZ2mL5bUz7IPq8nS4Qk"
gwrite("60_gemini_text_usage", [
    gchunk(rid, [{"text": "Demand"}], usage=gusage(9, 1, 31)),
    gchunk(rid, [{"text": " flows upstream,"}], usage=gusage(9, 4, 31)),
    gchunk(rid, [{"text": " events flow down."}], "STOP", gusage(9, 8, 31)),
], exp(G, "completed", (9, 39), "STOP", "Demand flows upstream, events flow down.",
  "Gemini text across three chunks, each a GenerateContentResponse with the new parts only and the cumulative usageMetadata; finishReason STOP and then the body ends (no terminal event). output_tokens = candidatesTokenCount + thoughtsTokenCount.",
  final={"id": rid, "model": GM}))

# 61: parallel function calls, the first carrying the thought signature
rid = "x61QqZ2aF3nWz7IP2pDp8Ao"
gwrite("61_gemini_parallel_function_calls", [
    gchunk(rid, [
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": "CiQBcsjafDmXkTrK2VZ3hQ2Qe4sVb0g8Q1M="},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "celsius"}}},
    ], "STOP", gusage(74, 36, 112)),
], exp(G, "completed", (74, 148), "STOP", "",
  "Gemini parallel function calls: two whole functionCall parts in one chunk (Gemini streams no argument fragments and sends no call id). Each becomes one tool_call_delta and one tool_call with the synthetic ids gemini-call-0 and gemini-call-1; the thoughtSignature on the first call part is a reasoning signature of the call's index.",
  tool_calls=[{"index": 0, "id": "gemini-call-0", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
              {"index": 1, "id": "gemini-call-1", "name": "get_weather", "arguments": '{"city":"Paris","unit":"celsius"}'}],
  final={"reasoning": [{"index": 0, "text": "", "signature": "CiQBcsjafDmXkTrK2VZ3hQ2Qe4sVb0g8Q1M="}],
         "tool_calls": [
             {"index": 0, "id": "gemini-call-0", "name": "get_weather", "kind": "function", "finished": True, "arguments": {"city": "Oslo"}},
             {"index": 1, "id": "gemini-call-1", "name": "get_weather", "kind": "function", "finished": True, "arguments": {"city": "Paris", "unit": "celsius"}}]}))

# 62: safety stop mid-answer
rid = "x62Lm52aHqWz7IPwdbC4Ak"
ratings = [{"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
           {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
           {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
           {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}]
gwrite("62_gemini_safety_stop", [
    gchunk(rid, [{"text": "To make it, first"}], usage=gusage(15, 5)),
    gchunk(rid, None, "SAFETY", gusage(15, 5), safetyRatings=ratings),
], exp(G, "refused", (15, 5), "SAFETY", "To make it, first",
  "Gemini's safety system stops the answer: a last chunk with no content, finishReason SAFETY and the blocking safetyRatings. The partial text is kept; the outcome is refused, neither completed nor incomplete."))

# 63: max tokens
rid = "x63Tn62aJpWz7IPr9bF4Aw"
gwrite("63_gemini_max_tokens", [
    gchunk(rid, [{"text": "Bounded buffers keep"}], usage=gusage(11, 3, 20)),
    gchunk(rid, [{"text": " memory"}], "MAX_TOKENS", gusage(11, 4, 20)),
], exp(G, "incomplete", (11, 24), "MAX_TOKENS", "Bounded buffers keep memory",
  "Gemini output cut by maxOutputTokens: finishReason MAX_TOKENS maps to incomplete; the text so far is kept."))

# 64: thought summaries (includeThoughts) with a signature
rid = "x64Pq72aKsWz7IPy8bG4Ag"
gwrite("64_gemini_thinking_signature", [
    gchunk(rid, [{"text": "**Comparing decimals**\n\nCompare 9.11 and 9.9 digit by digit", "thought": True}], usage=gusage(18, None, 96)),
    gchunk(rid, [{"text": ": 0.9 > 0.11.", "thought": True}], usage=gusage(18, None, 140)),
    gchunk(rid, [{"text": "9.9 is larger"}], usage=gusage(18, 3, 140)),
    gchunk(rid, [{"text": " than 9.11.", "thoughtSignature": "CikBcsjafNQ0b0r3yJkq2Z8aY8m3uVd4W9Tz0H7K6Q1o5xv2n0Lb8w=="}], "STOP", gusage(18, 7, 140)),
], exp(G, "completed", (18, 147), "STOP", "9.9 is larger than 9.11.",
  "Gemini thinking with includeThoughts: parts with thought: true are reasoning (one block for the run of thought parts), never text; the thoughtSignature on the last text part is kept as the signature of that text block's index, so it can go back to the model.",
  final={"reasoning": [
      {"index": 0, "text": "**Comparing decimals**\n\nCompare 9.11 and 9.9 digit by digit: 0.9 > 0.11."},
      {"index": 1, "text": "", "signature": "CikBcsjafNQ0b0r3yJkq2Z8aY8m3uVd4W9Tz0H7K6Q1o5xv2n0Lb8w=="}]}))

# 65: the prompt itself is blocked
rid = "x65Wz82aLtWz7IPo7bH4Aq"
gwrite("65_gemini_prompt_blocked", [
    {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
     "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}]},
     "modelVersion": GM, "responseId": rid},
], exp(G, "refused", (12, 0), "PROHIBITED_CONTENT", "",
  "Gemini blocks the prompt: one chunk with promptFeedback.blockReason and no candidates. The outcome is refused with the block reason as stop_reason."))

# 66: body cut before any finishReason
rid = "x66Xa92aMuWz7IPn6bI4Ae"
gwrite("66_gemini_truncated", [
    gchunk(rid, [{"text": "Half an"}], usage=gusage(7, 2)),
    gchunk(rid, [{"text": " answer"}], usage=gusage(7, 3)),
], exp(G, "truncated", (7, 3), None, "Half an answer",
  "Gemini body that ends before any chunk carries a finishReason: the stream is truncated, never success (Gemini has no terminal event; the finishReason is the only sign the answer is whole)."))

# 67: an error chunk mid-stream
rid = "x67Yb02aNvWz7IPm5bJ4Aa"
write("67_gemini_error_midstream", [
    "data: " + gdump(gchunk(rid, [{"text": "Partial"}], usage=gusage(6, 1))) + "\r\n\r\n",
    "data: " + gdump({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}) + "\r\n\r\n",
], exp(G, "failed", (6, 1), None, "Partial",
  "Gemini error mid-stream: a chunk holding an error object (code, message, status) ends the stream as failed; the error kind is the status.",
  errors=["UNAVAILABLE"]))

# 68: malformed function call
rid = "x68Zc12aOwWz7IPl4bK4AU"
gwrite("68_gemini_malformed_function_call", [
    gchunk(rid, None, "MALFORMED_FUNCTION_CALL", gusage(88, 0), finishMessage="Malformed function call: print(default_api.get_weather(city=Oslo))"),
], exp(G, "failed", (88, 0), "MALFORMED_FUNCTION_CALL", "",
  "Gemini finishReason MALFORMED_FUNCTION_CALL: the model wrote a call the API could not parse and nothing usable was sent. The outcome is failed, with an error of kind malformed_function_call carrying the finishMessage, never completed.",
  errors=["malformed_function_call"]))

# 69: Google Search grounding
rid = "x69Ad22aPxWz7IPk3bL4AO"
grounding = {
    "searchEntryPoint": {"renderedContent": "<div class=\"container\">…</div>"},
    "groundingChunks": [
        {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQ1", "title": "hexdocs.pm"}},
        {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AUZIYQ2", "title": "elixir-lang.org"}}],
    "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": 35, "text": "GenStage consumers send demand upstream."}, "groundingChunkIndices": [0, 1]}],
    "webSearchQueries": ["GenStage demand"]}
gwrite("69_gemini_grounding_citations", [
    gchunk(rid, [{"text": "GenStage consumers send demand"}], usage=gusage(10, 6)),
    gchunk(rid, [{"text": " upstream."}], "STOP", gusage(10, 9), groundingMetadata=grounding),
], exp(G, "completed", (10, 9), "STOP", "GenStage consumers send demand upstream.",
  "Gemini grounded in Google Search: the last chunk carries groundingMetadata; each groundingChunk becomes a citation (type grounding_chunk) of the text.",
  final={"citations": [dict(c, type="grounding_chunk") for c in grounding["groundingChunks"]]}))
