//! An answer's tool calls, read from the text the model wrote in its format. Text that is not
//! a well-formed call stays content, so a model that writes something else loses nothing.

use super::Format;
use serde_json::Value;

/// One call: the function's name and its arguments as a JSON text (as OpenAI sends them).
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub name: String,
    pub arguments: String,
}

/// An answer split into its content (none when only calls were written) and its calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub content: Option<String>,
    pub calls: Vec<Call>,
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";

pub fn parse(format: Format, text: &str) -> Parsed {
    match format {
        Format::Hermes => hermes(text),
        Format::Llama3 => llama3(text),
        Format::Generic => generic(text),
    }
}

/// `{"name": ..., KEY: {...}}` with KEY `arguments` or `parameters` (either is taken in every
/// format: models mix them up).
fn call(v: &Value) -> Option<Call> {
    let name = v.get("name")?.as_str()?.to_string();
    let args = v.get("arguments").or_else(|| v.get("parameters"));
    let arguments = match args {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(a) => a.to_string(),
    };
    Some(Call { name, arguments })
}

fn content(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn hermes(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut rest = text;
    let mut plain = String::new();
    while let Some(i) = rest.find(OPEN) {
        plain.push_str(&rest[..i]);
        let after = &rest[i + OPEN.len()..];
        let (body, next) = match after.find(CLOSE) {
            Some(j) => (&after[..j], &after[j + CLOSE.len()..]),
            None => (after, ""),
        };
        match serde_json::from_str::<Value>(body.trim())
            .ok()
            .as_ref()
            .and_then(call)
        {
            Some(c) => out.calls.push(c),
            None => plain.push_str(&rest[i..rest.len() - next.len()]),
        }
        rest = next;
    }
    plain.push_str(rest);
    out.content = content(&plain);
    out
}

fn llama3(text: &str) -> Parsed {
    let t = text.trim();
    let mut rest = t.strip_prefix(PYTHON_TAG).unwrap_or(t).trim_start();
    // One call, or several separated by ';' (as Llama 3.2 writes parallel calls); anything
    // else makes the whole answer content.
    let mut calls = Vec::new();
    while !rest.is_empty() {
        let mut de = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let Some(Ok(v)) = de.next() else { break };
        let Some(c) = call(&v) else { break };
        calls.push(c);
        rest = rest[de.byte_offset()..].trim_start();
        rest = rest.strip_prefix(';').unwrap_or(rest).trim_start();
    }
    if rest.is_empty() && !calls.is_empty() {
        Parsed {
            content: None,
            calls,
        }
    } else {
        Parsed {
            content: content(text),
            calls: Vec::new(),
        }
    }
}

fn generic(text: &str) -> Parsed {
    let Ok(v) = serde_json::from_str::<Value>(text.trim()) else {
        return Parsed {
            content: content(text),
            calls: Vec::new(),
        };
    };
    if let Some(list) = v.get("tool_calls").and_then(Value::as_array) {
        let calls: Option<Vec<Call>> = list.iter().map(call).collect();
        if let Some(calls) = calls.filter(|c| !c.is_empty()) {
            return Parsed {
                content: None,
                calls,
            };
        }
    }
    if let Some(c) = v.get("tool_call").and_then(call) {
        return Parsed {
            content: None,
            calls: vec![c],
        };
    }
    if let Some(r) = v.get("response") {
        let s = match r {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Parsed {
            content: Some(s),
            calls: Vec::new(),
        };
    }
    Parsed {
        content: content(text),
        calls: Vec::new(),
    }
}

/// How much of the end of `s` could be the start of `marker` (text to hold back while
/// streaming, so a marker split across tokens is seen whole).
pub fn partial_suffix(s: &str, marker: &str) -> usize {
    (1..marker.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && marker.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

pub(crate) const HERMES_OPEN: &str = OPEN;
pub(crate) const LLAMA3_TAG: &str = PYTHON_TAG;

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, args: &str) -> Call {
        Call {
            name: name.into(),
            arguments: args.into(),
        }
    }

    #[test]
    fn hermes_blocks_and_the_text_around_them() {
        let p = parse(
            Format::Hermes,
            "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
        );
        assert_eq!(p.content.as_deref(), Some("Let me check."));
        assert_eq!(
            p.calls,
            [c("get_weather", r#"{"city":"Paris"}"#), c("get_time", "{}")]
        );
        // Cut off before the closing tag (the token limit): still a call.
        let p = parse(
            Format::Hermes,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}",
        );
        assert_eq!(p.calls, [c("f", r#"{"x":1}"#)]);
        assert_eq!(p.content, None);
        // Not JSON inside: kept as text.
        let p = parse(Format::Hermes, "a <tool_call>oops</tool_call> b");
        assert!(p.calls.is_empty());
        assert_eq!(
            p.content.as_deref(),
            Some("a <tool_call>oops</tool_call> b")
        );
    }

    #[test]
    fn llama3_json_calls() {
        let p = parse(
            Format::Llama3,
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}",
        );
        assert_eq!(p.calls, [c("get_weather", r#"{"city":"Rome"}"#)]);
        let p = parse(
            Format::Llama3,
            "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"k\": 2}}",
        );
        assert_eq!(p.calls, [c("a", "{}"), c("b", r#"{"k":2}"#)]);
        let p = parse(Format::Llama3, "The weather is {sunny}.");
        assert!(p.calls.is_empty());
        assert_eq!(p.content.as_deref(), Some("The weather is {sunny}."));
        let p = parse(Format::Llama3, "{\"answer\": 4}");
        assert!(p.calls.is_empty(), "an object without a name is content");
    }

    #[test]
    fn generic_answers() {
        let p = parse(
            Format::Generic,
            r#"{"tool_calls": [{"name": "f", "arguments": {"q": "x"}}]}"#,
        );
        assert_eq!(p.calls, [c("f", r#"{"q":"x"}"#)]);
        let p = parse(Format::Generic, r#"{"response": "Hello!"}"#);
        assert_eq!(p.content.as_deref(), Some("Hello!"));
        assert!(p.calls.is_empty());
        let p = parse(Format::Generic, "not json");
        assert_eq!(p.content.as_deref(), Some("not json"));
    }

    #[test]
    fn held_back_suffixes() {
        assert_eq!(partial_suffix("Hello <tool", "<tool_call>"), 5);
        assert_eq!(partial_suffix("Hello <", "<tool_call>"), 1);
        assert_eq!(partial_suffix("Hello", "<tool_call>"), 0);
        assert_eq!(partial_suffix("é<", "<tool_call>"), 1);
        assert_eq!(partial_suffix("", "<tool_call>"), 0);
    }
}
