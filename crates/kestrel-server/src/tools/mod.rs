//! Tool calling in `/v1/chat/completions`: `tools` and `tool_choice` checked into a [`Plan`],
//! the conversation's tool calls and results given to the chat template, and the answer's
//! calls parsed back out (`parse`), also while streaming (`stream`).
//!
//! A template that writes tools in a known format gets them itself: Hermes-style
//! `<tool_call>` blocks (Qwen 2.5/3, Hermes, SmolLM3) or Llama 3's bare JSON call. A template
//! that knows no tools (SmolLM2's, Gemma 3's) gets them described in the system message, and
//! the answer is held by a JSON schema to `{"tool_calls": [...]}` or `{"response": "..."}`
//! (llama.cpp's generic format), which is what lets a small model call tools reliably.
//! `tool_choice: "required"` or a named function constrains a native format's answer to
//! calls too; `"auto"` leaves it free and parses what comes.

pub(crate) mod parse;
pub(crate) mod stream;

use crate::api::{ChatRequest, Message, Tool, ToolChoice};
use crate::error::ApiError;
use kestrel_engine::ChatMessage;
use serde_json::{json, Value};

/// How a model writes tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`.
    Hermes,
    /// `{"name": ..., "parameters": {...}}`, possibly after `<|python_tag|>`.
    Llama3,
    /// Tools described in the system message; `{"tool_calls": [...]}` or `{"response": ...}`.
    Generic,
}

impl Format {
    /// The format a chat template's source writes.
    pub fn detect(template: &str) -> Format {
        if template.contains("<tool_call>") {
            Format::Hermes
        } else if template.contains("tools")
            && (template.contains("<|python_tag|>") || template.contains("<|start_header_id|>"))
        {
            Format::Llama3
        } else {
            Format::Generic
        }
    }

    /// The key of a call's arguments object.
    fn args_key(self) -> &'static str {
        match self {
            Format::Llama3 => "parameters",
            _ => "arguments",
        }
    }
}

/// What a request with tools asks for.
pub(crate) struct Plan {
    pub format: Format,
    /// `tools` for a template that writes them itself.
    pub template_tools: Option<Value>,
    /// The schema or grammar the answer is held to, if any.
    pub constraint: Option<kestrel_grammar::Spec>,
    /// A system message describing the tools (the generic format).
    pub system: Option<String>,
}

impl Plan {
    /// The plan for `req` with a template in `format`; `None` when no tool may be called.
    pub fn new(req: &ChatRequest, format: Format) -> Result<Option<Plan>, ApiError> {
        let tools = req.tools.as_deref().unwrap_or(&[]);
        check_tools(tools)?;
        let required = match &req.tool_choice {
            None => false,
            Some(ToolChoice::Mode(m)) => match m.as_str() {
                "auto" => false,
                "none" => return Ok(None),
                "required" => true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "tool_choice '{other}' is not one of auto, none, required or a function"
                    ))
                    .param("tool_choice"))
                }
            },
            Some(ToolChoice::Named { .. }) => true,
        };
        let chosen: Vec<&Tool> = match &req.tool_choice {
            Some(ToolChoice::Named { function }) => {
                let t = tools.iter().find(|t| t.function.name == function.name);
                vec![t.ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "tool_choice names '{}', which is not in tools",
                        function.name
                    ))
                    .param("tool_choice")
                })?]
            }
            _ => tools.iter().collect(),
        };
        if tools.is_empty() {
            if required {
                return Err(ApiError::bad_request(
                    "tool_choice requires a call but tools is empty",
                )
                .param("tool_choice"));
            }
            return Ok(None);
        }
        let parallel = req.parallel_tool_calls.unwrap_or(false);
        let calls = calls_schema(format, &chosen, parallel);
        let (template_tools, constraint, system) = match format {
            Format::Generic => {
                let schema = if required {
                    calls
                } else {
                    json!({"anyOf": [calls, {
                        "type": "object",
                        "properties": {"response": {"type": "string"}},
                        "required": ["response"],
                        "additionalProperties": false,
                    }]})
                };
                let spec = kestrel_grammar::Spec::JsonSchema(schema);
                (None, Some(spec), Some(describe(tools, required)))
            }
            Format::Hermes => {
                let spec = required.then(|| {
                    let one = &calls["properties"]["tool_calls"]["items"];
                    let more = if parallel { " (\"\\n\" call)*" } else { "" };
                    kestrel_grammar::Spec::Lark(format!(
                        "start: call{more}\ncall: \"<tool_call>\\n\" body \"\\n</tool_call>\"\nbody: %json {one}\n"
                    ))
                });
                (Some(tools_json(tools)), spec, None)
            }
            Format::Llama3 => {
                let spec = required.then(|| {
                    kestrel_grammar::Spec::JsonSchema(
                        calls["properties"]["tool_calls"]["items"].clone(),
                    )
                });
                (Some(tools_json(tools)), spec, None)
            }
        };
        Ok(Some(Plan {
            format,
            template_tools,
            constraint,
            system,
        }))
    }
}

/// Names as OpenAI allows them, each once; `type` "function"; parameters an object schema.
fn check_tools(tools: &[Tool]) -> Result<(), ApiError> {
    for (i, t) in tools.iter().enumerate() {
        if t.kind != "function" {
            return Err(ApiError::bad_request(format!(
                "tools[{i}].type is '{}'; only 'function' is supported",
                t.kind
            ))
            .param(format!("tools[{i}].type")));
        }
        let n = &t.function.name;
        let ok = (1..=64).contains(&n.len())
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(ApiError::bad_request(format!(
                "tools[{i}].function.name {n:?} must be 1-64 characters of a-z, A-Z, 0-9, '_' and '-'"
            ))
            .param(format!("tools[{i}].function.name")));
        }
        if tools[..i].iter().any(|u| &u.function.name == n) {
            return Err(ApiError::bad_request(format!("tools names '{n}' twice"))
                .param(format!("tools[{i}].function.name")));
        }
        if let Some(p) = &t.function.parameters {
            if !p.is_object() {
                return Err(ApiError::bad_request(format!(
                    "tools[{i}].function.parameters must be a JSON schema object"
                ))
                .param(format!("tools[{i}].function.parameters")));
            }
        }
    }
    Ok(())
}

/// `{"tool_calls": [call, ...]}`, each call `{"name": one of them, ARGS: its parameters}`.
fn calls_schema(format: Format, tools: &[&Tool], parallel: bool) -> Value {
    let key = format.args_key();
    let one: Vec<Value> = tools
        .iter()
        .map(|t| {
            let mut params = t
                .function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object"}));
            if t.function.strict == Some(true) {
                close_objects(&mut params);
            }
            json!({
                "type": "object",
                "properties": {"name": {"const": t.function.name}, key: params},
                "required": ["name", key],
                "additionalProperties": false,
            })
        })
        .collect();
    let item = if one.len() == 1 {
        one[0].clone()
    } else {
        json!({ "anyOf": one })
    };
    let mut arr = json!({"type": "array", "items": item, "minItems": 1});
    if !parallel {
        arr["maxItems"] = json!(1);
    }
    json!({
        "type": "object",
        "properties": {"tool_calls": arr},
        "required": ["tool_calls"],
        "additionalProperties": false,
    })
}

/// OpenAI's `strict`: an object schema that does not say otherwise allows no properties
/// beyond those it lists, at every depth.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (k, sub) in o.iter_mut() {
                // `properties`, `$defs` and `definitions` map names to schemas; `items`,
                // `anyOf` and the like hold schemas; `enum` and `const` hold values.
                if k != "enum" && k != "const" && k != "default" && k != "examples" {
                    close_objects(sub);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// `tools` as the templates read them (`tool.function.name`, ...).
fn tools_json(tools: &[Tool]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| json!({"type": "function", "function": function_json(t)}))
            .collect(),
    )
}

fn function_json(t: &Tool) -> Value {
    let mut f = json!({"name": t.function.name});
    if let Some(d) = &t.function.description {
        f["description"] = json!(d);
    }
    f["parameters"] = t
        .function
        .parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    f
}

/// The system message of the generic format.
fn describe(tools: &[Tool], required: bool) -> String {
    let mut s = String::from(
        "You can call the following tools. Each is given as JSON: its name, what it does and a \
         JSON schema of its arguments.\n",
    );
    for t in tools {
        s.push_str(&function_json(t).to_string());
        s.push('\n');
    }
    s.push_str(
        "\nTo call a tool, answer with JSON: {\"tool_calls\": [{\"name\": \"<tool name>\", \
         \"arguments\": {<its arguments>}}]}",
    );
    if !required {
        s.push_str(
            ". To answer the user without a tool, answer with JSON: {\"response\": \"<your answer>\"}",
        );
    }
    s.push('.');
    s
}

/// The conversation as chat-template messages for a template in `format`: tool calls and
/// results as the template's own fields where it has a tool format, and as the JSON the
/// generic format asks the model to write (results in a user turn) where it has none.
pub(crate) fn messages(
    msgs: &[Message],
    format: Format,
    system: Option<&str>,
) -> Result<Vec<ChatMessage>, ApiError> {
    if msgs.is_empty() {
        return Err(ApiError::bad_request("messages must not be empty").param("messages"));
    }
    let mut out: Vec<ChatMessage> = Vec::with_capacity(msgs.len() + 1);
    for (i, m) in msgs.iter().enumerate() {
        let text = m.text()?;
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" => "tool",
            other => {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].role '{other}' is not supported (system, developer, user, assistant, tool)"
                ))
                .param(format!("messages[{i}].role")))
            }
        };
        let calls = m.tool_calls.as_deref().unwrap_or(&[]);
        let msg = match (role, format) {
            ("assistant", Format::Generic) if !calls.is_empty() => {
                let c: Vec<Value> = calls
                    .iter()
                    .map(|c| json!({"name": c.function.name, "arguments": arguments(&c.function.arguments)}))
                    .collect();
                ChatMessage::new("assistant", json!({ "tool_calls": c }).to_string())
            }
            ("assistant", _) if !calls.is_empty() => {
                let c: Vec<Value> = calls
                    .iter()
                    .enumerate()
                    .map(|(k, c)| {
                        json!({
                            "id": c.id.clone().unwrap_or_else(|| format!("call_{i}_{k}")),
                            "type": "function",
                            "function": {"name": c.function.name, "arguments": arguments(&c.function.arguments)},
                        })
                    })
                    .collect();
                ChatMessage::new("assistant", text).with("tool_calls", Value::Array(c))
            }
            ("tool", Format::Generic) => {
                let mut r = json!({"content": text});
                if let Some(id) = &m.tool_call_id {
                    r["tool_call_id"] = json!(id);
                }
                if let Some(n) = &m.name {
                    r["name"] = json!(n);
                }
                let body = json!({ "tool_response": r }).to_string();
                // Results of parallel calls go in one user turn (templates that require
                // user and assistant turns to alternate refuse two in a row).
                match out.last_mut() {
                    Some(prev) if prev.role == "user" && i > 0 && msgs[i - 1].role == "tool" => {
                        prev.content.push('\n');
                        prev.content.push_str(&body);
                        continue;
                    }
                    _ => ChatMessage::new("user", body),
                }
            }
            ("tool", _) => {
                let mut c = ChatMessage::new("tool", text);
                if let Some(id) = &m.tool_call_id {
                    c = c.with("tool_call_id", json!(id));
                }
                if let Some(n) = &m.name {
                    c = c.with("name", json!(n));
                }
                c
            }
            (role, _) => ChatMessage::new(role, text),
        };
        out.push(msg);
    }
    if let Some(sys) = system {
        match out.first_mut() {
            Some(first) if first.role == "system" => {
                first.content.push_str("\n\n");
                first.content.push_str(sys);
            }
            _ => out.insert(0, ChatMessage::new("system", sys)),
        }
    }
    Ok(out)
}

/// A call's arguments as an object for the template: OpenAI sends a JSON text.
fn arguments(a: &Value) -> Value {
    match a {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Value::Null => json!({}),
        v => v.clone(),
    }
}

/// A fresh tool-call id in OpenAI's shape (`call_` and 24 letters and digits).
pub(crate) fn call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // splitmix64 of the time and a counter: unique in this process, unpredictable enough.
    let mut x = t ^ N.fetch_add(1, Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut s = String::from("call_");
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for _ in 0..24 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        s.push(A[(z % A.len() as u64) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
    }

    #[test]
    fn formats_are_told_apart_by_their_templates() {
        assert_eq!(
            Format::detect("{% if tools %}<tool_call>{% endif %}"),
            Format::Hermes
        );
        assert_eq!(
            Format::detect("{% if tools %}<|start_header_id|>ipython{% endif %}"),
            Format::Llama3
        );
        assert_eq!(
            Format::detect("<|im_start|>{{ m.content }}"),
            Format::Generic
        );
    }

    #[test]
    fn choices() {
        let m = json!([{"role": "user", "content": "hi"}]);
        let p = Plan::new(
            &req(json!({"messages": m, "tools": weather()})),
            Format::Generic,
        )
        .unwrap()
        .unwrap();
        let Some(kestrel_grammar::Spec::JsonSchema(s)) = &p.constraint else {
            panic!()
        };
        assert!(s["anyOf"].is_array(), "auto allows a plain response");
        assert!(p.system.unwrap().contains("get_weather"));
        let none = json!({"messages": m, "tools": weather(), "tool_choice": "none"});
        assert!(Plan::new(&req(none), Format::Generic).unwrap().is_none());
        let auto_native = json!({"messages": m, "tools": weather()});
        let p = Plan::new(&req(auto_native), Format::Hermes)
            .unwrap()
            .unwrap();
        assert!(p.constraint.is_none() && p.template_tools.is_some());
        let named = json!({"messages": m, "tools": weather(),
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        let p = Plan::new(&req(named), Format::Hermes).unwrap().unwrap();
        let Some(kestrel_grammar::Spec::Lark(g)) = &p.constraint else {
            panic!()
        };
        assert!(
            g.contains("<tool_call>") && g.contains("get_weather"),
            "{g}"
        );
    }

    #[test]
    fn bad_tools_name_their_field() {
        let m = json!([{"role": "user", "content": "hi"}]);
        let cases = [
            (
                json!({"messages": m, "tools": weather(), "tool_choice": "sometimes"}),
                "tool_choice",
            ),
            (
                json!({"messages": m, "tools": weather(),
                "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
                "tool_choice",
            ),
            (
                json!({"messages": m, "tools": [{"type": "retrieval", "function": {"name": "x"}}]}),
                "tools[0].type",
            ),
            (
                json!({"messages": m, "tools": [{"type": "function", "function": {"name": "a b"}}]}),
                "tools[0].function.name",
            ),
            (
                json!({"messages": m, "tools": [{"type": "function", "function": {"name": "x", "parameters": 3}}]}),
                "tools[0].function.parameters",
            ),
            (
                json!({"messages": m, "tool_choice": "required"}),
                "tool_choice",
            ),
        ];
        for (body, field) in cases {
            let e = Plan::new(&req(body.clone()), Format::Generic)
                .err()
                .unwrap_or_else(|| panic!("{body} accepted"));
            assert_eq!(e.param.as_deref(), Some(field), "{body}");
        }
    }

    #[test]
    fn generic_history_becomes_json_turns() {
        let m: Vec<Message> = serde_json::from_value(json!([
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
        ]))
        .unwrap();
        let g = messages(&m, Format::Generic, Some("TOOLS")).unwrap();
        let roles: Vec<&str> = g.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        let calls: Value = serde_json::from_str(&g[2].content).unwrap();
        assert_eq!(calls["tool_calls"][1]["arguments"]["city"], "Rome");
        assert_eq!(g[3].content.lines().count(), 2);
        let h = messages(&m, Format::Hermes, None).unwrap();
        let roles: Vec<&str> = h.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "tool", "tool"]);
        let (k, v) = &h[1].extra[0];
        assert_eq!(k, "tool_calls");
        assert_eq!(v[0]["function"]["arguments"]["city"], "Paris");
        assert_eq!(h[3].extra[0].1, json!("call_2"));
    }

    #[test]
    fn strict_closes_every_object() {
        let mut v = json!({"type": "object", "properties": {
            "a": {"type": "object", "properties": {"b": {"type": "string"}}},
            "c": {"type": "array", "items": {"type": "object", "properties": {}, "additionalProperties": true}},
            "properties": {"const": {"properties": 1}}}});
        close_objects(&mut v);
        assert_eq!(v["additionalProperties"], json!(false));
        assert_eq!(v["properties"]["a"]["additionalProperties"], json!(false));
        assert_eq!(
            v["properties"]["c"]["items"]["additionalProperties"],
            json!(true)
        );
        assert_eq!(
            v["properties"]["properties"]["const"],
            json!({"properties": 1})
        );
    }

    #[test]
    fn call_ids_look_like_openais() {
        let a = call_id();
        let b = call_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 29);
        assert!(a.starts_with("call_") && a[5..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
