//! Chat templates: the Jinja template from `tokenizer.chat_template` rendered with minijinja
//! (HF-compatible settings and helpers), or a built-in format when the file has none.

use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::{Environment, Error, ErrorKind, Value};

use crate::template_fns::{from_json, py_methods, strftime_now, tojson};
use crate::TokenizerError;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// Further fields a template may read, as JSON (OpenAI's `tool_calls`, `tool_call_id`,
    /// `name`).
    pub extra: Vec<(String, serde_json::Value)>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            extra: Vec::new(),
        }
    }

    /// The message with one more field for the template.
    pub fn with(mut self, key: impl Into<String>, value: serde_json::Value) -> ChatMessage {
        self.extra.push((key.into(), value));
        self
    }
}

const GEMMA: &str = "{%- set ns = namespace(sys='') -%}\
{%- for message in messages -%}\
{%- if message['role'] == 'system' -%}{%- set ns.sys = ns.sys + (message['content'] | trim) -%}\
{%- else -%}\
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}\
{{ '<start_of_turn>' + role + '\\n' }}\
{%- if ns.sys != '' and role != 'model' -%}{{ ns.sys + '\\n\\n' }}{%- set ns.sys = '' -%}{%- endif -%}\
{{ (message['content'] | trim) + '<end_of_turn>\\n' }}\
{%- endif -%}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}";

const LLAMA3: &str = "{%- for message in messages -%}\
{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim) + '<|eot_id|>' }}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}";

const PHI3: &str = "{%- for message in messages -%}\
{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}";

const CHATML: &str = "{%- for message in messages -%}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    name: String,
    src: String,
    bos: String,
    eos: String,
}

fn terr(e: Error) -> TokenizerError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let _ = write!(msg, ": {s}");
        src = s.source();
    }
    TokenizerError::Template(msg)
}

impl ChatTemplate {
    /// The template from `tokenizer.chat_template`, or a built-in one chosen from the
    /// architecture and vocab (gemma*, llama3, phi3, chatml as the fallback).
    pub fn from_gguf(g: &kestrel_gguf::GgufFile) -> Result<ChatTemplate, TokenizerError> {
        let tokens = g
            .get_str_array_opt("tokenizer.ggml.tokens")
            .ok()
            .flatten()
            .unwrap_or(&[]);
        let tok = |key: &str| -> String {
            g.get_u32_opt(key)
                .ok()
                .flatten()
                .and_then(|i| tokens.get(i as usize))
                .cloned()
                .unwrap_or_default()
        };
        let bos = tok("tokenizer.ggml.bos_token_id");
        let eos = tok("tokenizer.ggml.eos_token_id");
        if let Some(src) = g.get_str_opt("tokenizer.chat_template").ok().flatten() {
            return ChatTemplate::from_source(src, &bos, &eos);
        }
        let arch = g.architecture().unwrap_or("");
        ChatTemplate::builtin_for(arch, tokens, &bos, &eos)
    }

    /// Pick a built-in template from the architecture name and the vocab.
    pub fn builtin_for(
        arch: &str,
        tokens: &[String],
        bos: &str,
        eos: &str,
    ) -> Result<ChatTemplate, TokenizerError> {
        let has = |t: &str| tokens.iter().any(|x| x == t);
        let name = if arch.starts_with("gemma") || has("<start_of_turn>") {
            "gemma"
        } else if has("<|start_header_id|>") && has("<|eot_id|>") {
            "llama3"
        } else if has("<|assistant|>") && has("<|end|>") {
            "phi3"
        } else {
            "chatml"
        };
        ChatTemplate::builtin(name, bos, eos)
    }

    /// A built-in template by name: "gemma", "llama3", "phi3" or "chatml".
    pub fn builtin(name: &str, bos: &str, eos: &str) -> Result<ChatTemplate, TokenizerError> {
        let src = match name {
            "gemma" => GEMMA,
            "llama3" => LLAMA3,
            "phi3" => PHI3,
            "chatml" => CHATML,
            other => {
                return Err(TokenizerError::Template(format!(
                    "no built-in template '{other}'"
                )))
            }
        };
        let mut t = ChatTemplate::from_source(src, bos, eos)?;
        t.name = format!("{name} (built-in)");
        Ok(t)
    }

    /// Compile a Jinja chat template.
    pub fn from_source(src: &str, bos: &str, eos: &str) -> Result<ChatTemplate, TokenizerError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(terr)?;
        env.set_syntax(syntax);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| -> String {
            strftime_now(&fmt)
        });
        env.add_filter("tojson", tojson);
        // minijinja's own namespace, remembered so its cycles can be broken after the render.
        env.add_function(
            "namespace",
            |defaults: Option<minijinja::value::ValueOrKwargs>| {
                let ns = minijinja::functions::namespace(defaults)?;
                NAMESPACES.with(|n| n.borrow_mut().push(ns.clone()));
                Ok::<Value, Error>(ns)
            },
        );
        env.set_unknown_method_callback(py_methods);
        // A template is code from the model file: bound the work and depth of a render (see
        // `render` for the size of its output).
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_DEPTH);
        env.add_template_owned("chat", src.to_string())
            .map_err(terr)?;
        Ok(ChatTemplate {
            env,
            name: "gguf".to_string(),
            src: src.to_string(),
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// Another template source with this one's BOS and EOS text (`--chat-template-file`).
    pub fn with_source(&self, src: &str) -> Result<ChatTemplate, TokenizerError> {
        ChatTemplate::from_source(src, &self.bos, &self.eos)
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Whether this is a built-in format (the model file has no template).
    pub fn is_builtin(&self) -> bool {
        self.name != "gguf"
    }

    /// "gguf" for a template from the file, "<name> (built-in)" otherwise.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Render the conversation: a template from the model file in a child process
    /// (`isolate`), a built-in one here.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        self.render_tools(messages, None, add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with OpenAI's `tools` list given to the template as `tools`.
    pub fn render_tools(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        if self.is_builtin() {
            return self.render_inner(messages, tools, add_generation_prompt);
        }
        crate::isolate::run(|| {
            self.render_inner(messages, tools, add_generation_prompt)
                .map_err(|e| match e {
                    TokenizerError::Template(m) => m,
                    e => e.to_string(),
                })
        })
        .map_err(TokenizerError::Template)
    }

    /// [`ChatTemplate::render`] in this process, with the instruction, depth and output bounds.
    pub fn render_here(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        self.render_inner(messages, None, add_generation_prompt)
    }

    fn render_inner(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let tmpl = self.env.get_template("chat").map_err(terr)?;
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut pairs = vec![
                    ("role".to_string(), Value::from(m.role.as_str())),
                    ("content".to_string(), Value::from(m.content.as_str())),
                ];
                pairs.extend(m.extra.iter().map(|(k, v)| (k.clone(), from_json(v))));
                Value::from_pairs(pairs)
            })
            .collect();
        let ctx = minijinja::context! {
            messages => Value::from(msgs),
            tools => tools.map(from_json).unwrap_or(Value::from(())),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        };
        let json_len = |v: &serde_json::Value| v.to_string().len();
        let input: usize = messages
            .iter()
            .map(|m| {
                m.role.len()
                    + m.content.len()
                    + m.extra
                        .iter()
                        .map(|(k, v)| k.len() + json_len(v))
                        .sum::<usize>()
            })
            .sum::<usize>()
            + tools.map_or(0, json_len);
        let mut out = Bounded {
            buf: Vec::new(),
            limit: TEMPLATE_OUTPUT_MIN + TEMPLATE_OUTPUT_PER_INPUT * input,
        };
        NAMESPACES.with(|n| n.borrow_mut().clear());
        let rendered = tmpl.render_captured_to(ctx, &mut out);
        self.break_cycles();
        match rendered {
            Ok(_) => String::from_utf8(out.buf).map_err(|_| {
                TokenizerError::Template("the chat template wrote invalid UTF-8".into())
            }),
            Err(e) => Err(match e.kind() {
                ErrorKind::OutOfFuel => TokenizerError::Template(format!(
                    "the chat template ran more than {TEMPLATE_FUEL} instructions (does it loop?)"
                )),
                ErrorKind::WriteFailure if out.buf.len() >= out.limit => {
                    TokenizerError::Template(format!(
                        "the chat template's output passed {} bytes for {input} bytes of messages",
                        out.limit
                    ))
                }
                _ => terr(e),
            }),
        }
    }
}

impl ChatTemplate {
    /// A namespace can be made to hold itself (`{% set ns.me = ns %}`), a reference cycle
    /// minijinja never frees: every name set on a namespace of the last render is set to
    /// none (each cycle passes through such an assignment), so the render's values go.
    fn break_cycles(&self) {
        let made = NAMESPACES.with(|n| std::mem::take(&mut *n.borrow_mut()));
        for ns in made {
            let Ok(keys) = ns.try_iter() else { continue };
            for k in keys {
                let Some(k) = k.as_str().filter(|k| is_identifier(k)) else {
                    continue;
                };
                let src = format!("{{% set ns.{k} = none %}}");
                let _ = self
                    .env
                    .render_str(&src, minijinja::context! { ns => ns.clone() });
            }
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

thread_local! {
    /// The namespaces made by the render running on this thread.
    static NAMESPACES: std::cell::RefCell<Vec<Value>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Instructions one render may run: real templates take a few hundred per message.
const TEMPLATE_FUEL: u64 = 20_000_000;
/// Nesting of loops, conditions, macro calls and includes.
const TEMPLATE_DEPTH: usize = 100;
/// A render's output may be this many bytes, plus this many per byte of the messages.
const TEMPLATE_OUTPUT_MIN: usize = 1 << 20;
const TEMPLATE_OUTPUT_PER_INPUT: usize = 8;

/// The render's output, refusing to grow past `limit` bytes.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            self.buf
                .extend_from_slice(&b[..self.limit - self.buf.len()]);
            return Err(std::io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<ChatTemplate>();
    f::<Arc<ChatTemplate>>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Vec<ChatMessage> {
        vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "Hi!"),
            ChatMessage::new("assistant", "Hello."),
            ChatMessage::new("user", "How are you?"),
        ]
    }

    #[test]
    fn gemma_builtin() {
        let t = ChatTemplate::builtin_for("gemma3", &[], "<bos>", "<eos>").unwrap();
        assert_eq!(t.name(), "gemma (built-in)");
        let s = t.render(&conv(), true).unwrap();
        assert_eq!(
            s,
            "<start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n\
             <start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nHow are you?<end_of_turn>\n\
             <start_of_turn>model\n"
        );
    }

    #[test]
    fn chatml_llama3_phi3() {
        let c = ChatTemplate::builtin("chatml", "", "").unwrap();
        assert_eq!(
            c.render(&conv()[1..2], true).unwrap(),
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
        );
        let l = ChatTemplate::builtin("llama3", "", "").unwrap();
        assert_eq!(
            l.render(&conv()[1..2], true).unwrap(),
            "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let p = ChatTemplate::builtin("phi3", "", "").unwrap();
        assert_eq!(
            p.render(&conv()[1..2], true).unwrap(),
            "<|user|>\nHi!<|end|>\n<|assistant|>\n"
        );
    }

    #[test]
    fn helpers() {
        let t = ChatTemplate::from_source(
            "{{ bos_token }}{% for m in messages %}{{ m['content'].strip() | upper }}|{{ m | tojson }}{% endfor %}{% if false %}{{ raise_exception('x') }}{% endif %}",
            "<s>",
            "</s>",
        )
        .unwrap();
        let s = t
            .render(&[ChatMessage::new("user", "  a\"b  ")], false)
            .unwrap();
        assert_eq!(
            s,
            "<s>A\"B|{\"role\": \"user\", \"content\": \"  a\\\"b  \"}"
        );
        let bad = ChatTemplate::from_source("{{ raise_exception('nope') }}", "", "").unwrap();
        let e = bad.render(&[], false).unwrap_err();
        assert!(e.to_string().contains("nope"));
        assert!(ChatTemplate::from_source("{% for %}", "", "").is_err());
        let d = ChatTemplate::from_source("{{ strftime_now('%Y-%m-%d') }}", "", "").unwrap();
        assert_eq!(d.render(&[], false).unwrap().len(), 10);
    }

    #[test]
    fn tools_and_tool_fields_reach_the_template() {
        let src = "{% for t in tools %}[{{ t.function.name }}:{{ t.function.parameters | tojson }}]{% endfor %}\
{% for m in messages %}<{{ m.role }}>{{ m.content }}\
{% for c in m.tool_calls or [] %}({{ c.function.name }} {{ c.function.arguments.city }}){% endfor %}\
{% if m.tool_call_id %}#{{ m.tool_call_id }}{% endif %}{% endfor %}";
        let t = ChatTemplate::from_source(src, "", "").unwrap();
        assert_eq!(t.source(), src);
        let tools = serde_json::json!([{"type": "function", "function": {"name": "w",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        let msgs = [
            ChatMessage::new("user", "Paris?"),
            ChatMessage::new("assistant", "").with(
                "tool_calls",
                serde_json::json!([{"type": "function", "function": {"name": "w", "arguments": {"city": "Paris"}}}]),
            ),
            ChatMessage::new("tool", "sunny").with("tool_call_id", serde_json::json!("c1")),
        ];
        let s = t.render_tools(&msgs, Some(&tools), false).unwrap();
        assert_eq!(
            s,
            // Keys keep the request's order, as Python's json.dumps keeps them.
            "[w:{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}]\
             <user>Paris?<assistant>(w Paris)<tool>sunny#c1"
        );
        // Without tools the template sees none (an undefined-safe `tools` is falsy).
        let plain = ChatTemplate::from_source("{% if tools %}T{% endif %}x", "", "").unwrap();
        assert_eq!(plain.render(&msgs[..1], false).unwrap(), "x");
    }
}
