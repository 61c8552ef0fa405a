//! OpenAI request bodies (lenient in: unknown fields are ignored) and their checks. Responses
//! are built as JSON values in `routes`, so what goes out is exactly OpenAI's field set.

use crate::error::ApiError;
use serde::Deserialize;

/// A string or a list of strings (`stop`, `input`).
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s],
            StringOrList::Many(v) => v,
        }
    }
}

/// Message content: a string or a list of parts, of which only text parts are understood.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug, Clone)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    /// An assistant turn's tool calls.
    pub tool_calls: Option<Vec<ToolCallIn>>,
    /// A `tool` message: the call it answers.
    pub tool_call_id: Option<String>,
    pub name: Option<String>,
}

/// A tool call in an assistant message of the conversation.
#[derive(Deserialize, Debug, Clone)]
pub struct ToolCallIn {
    pub id: Option<String>,
    pub function: FunctionCallIn,
}

#[derive(Deserialize, Debug, Clone)]
pub struct FunctionCallIn {
    pub name: String,
    /// A JSON text as OpenAI sends it (an object is taken too).
    #[serde(default)]
    pub arguments: serde_json::Value,
}

/// One entry of `tools`.
#[derive(Deserialize, Debug, Clone)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Deserialize, Debug, Clone)]
pub struct FunctionDef {
    pub name: String,
    pub description: Option<String>,
    /// A JSON schema of the arguments object.
    pub parameters: Option<serde_json::Value>,
    /// OpenAI's strict mode: objects in `parameters` allow no unlisted properties.
    pub strict: Option<bool>,
}

/// `tool_choice`: "auto", "none", "required", or `{"type": "function", "function": {"name"}}`.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named { function: NamedFunction },
}

#[derive(Deserialize, Debug, Clone)]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// Fields shared by chat and plain completions.
#[derive(Deserialize, Debug, Clone, Default)]
pub struct Sampling {
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub stop: Option<StringOrList>,
    pub seed: Option<i64>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u64>,
    /// Kestrel extension: keep this conversation's KV cache between requests.
    pub session_id: Option<String>,
    /// Token id (as a string) to a bias in [-100, 100] added to its logit; -100 bans it.
    pub logit_bias: Option<std::collections::HashMap<String, f32>>,
    /// Extension shared with llama.cpp's server and vLLM: never end on an end-of-generation
    /// token (generation runs to `max_tokens`, a stop string or the context's end).
    #[serde(default)]
    pub ignore_eos: bool,
    /// OpenAI's structured output: `text`, `json_object`, or `json_schema` with a schema.
    pub response_format: Option<ResponseFormat>,
    /// llama.cpp's server extension: a JSON schema the answer must follow.
    pub json_schema: Option<serde_json::Value>,
    /// llama.cpp's GBNF grammar: refused with a pointer to what is taken instead.
    pub grammar: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Deserialize, Debug, Clone)]
pub struct JsonSchemaFormat {
    pub name: Option<String>,
    pub schema: Option<serde_json::Value>,
    /// Kestrel always enforces the schema; `strict` is accepted as OpenAI sends it.
    pub strict: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(default)]
    pub logprobs: bool,
    pub top_logprobs: Option<u64>,
    pub tools: Option<Vec<Tool>>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
}

/// `prompt` as a string, a list of token ids, or a list holding one string.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    Texts(Vec<String>),
}

#[derive(Deserialize, Debug, Clone)]
pub struct CompletionRequest {
    pub prompt: Prompt,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(default)]
    pub echo: bool,
    pub logprobs: Option<u64>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize, Debug, Clone)]
pub struct EmbeddingRequest {
    pub input: EmbeddingInput,
    pub model: Option<String>,
    pub encoding_format: Option<String>,
}

/// Parse a JSON body: a syntax error or a field of the wrong type is a 400 naming the problem.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let e = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => {
            // Nothing but whitespace may follow the value.
            de.end()
                .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
            return Ok(v);
        }
        Err(e) => e,
    };
    let mut field = e.path().to_string();
    let inner = e.into_inner();
    if matches!(
        inner.classify(),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof
    ) {
        return Err(ApiError::bad_request(format!(
            "malformed JSON body: {inner}"
        )));
    }
    let why = plain_types(&inner.to_string());
    if field.is_empty() || field == "." {
        // Fields of a flattened group carry no path: find the one whose removal cures or
        // changes the error (only on this error path, so the extra parses cost nothing).
        field = culprit::<T>(body).unwrap_or_default();
    }
    if field.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid request body: {why}"
        )));
    }
    let msg = format!("invalid request body: field '{field}': {why}");
    Err(ApiError::bad_request(msg).param(field))
}

/// The top-level field of `body` its parse error is about: removing it parses, or fails another
/// way than for a missing field.
fn culprit<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<String> {
    let serde_json::Value::Object(map) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    // The error as a parse of the value gives it (no position in the text), to compare with.
    let whole = serde_json::Value::Object(map.clone());
    let err = serde_json::from_value::<T>(whole).err()?.to_string();
    map.keys()
        .find(|k| {
            let mut rest = map.clone();
            rest.remove(*k);
            match serde_json::from_value::<T>(serde_json::Value::Object(rest)) {
                Ok(_) => true,
                Err(e) => {
                    let e = e.to_string();
                    e != err && !e.starts_with("missing field")
                }
            }
        })
        .cloned()
}

/// serde's description of what it wanted, in the API's words instead of Rust's ("expected u64"
/// is "expected a non-negative integer"; an untagged enum is the shapes it accepts); the
/// position in the body is left out (the field is named instead).
fn plain_types(msg: &str) -> String {
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    const SHAPES: [(&str, &str); 4] = [
        (
            "untagged enum Content",
            "expected a string or an array of content parts",
        ),
        (
            "untagged enum Prompt",
            "expected a string, an array of strings or an array of token ids",
        ),
        (
            "untagged enum StringOrList",
            "expected a string or an array of strings",
        ),
        ("untagged enum", "expected another shape of value"),
    ];
    for (rust, api) in SHAPES {
        if msg.contains(rust) {
            return api.to_string();
        }
    }
    let mut out = msg.to_string();
    for (rust, api) in [
        ("expected u64", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
        ("expected a boolean", "expected true or false"),
        ("invalid type: sequence", "invalid type: array"),
        ("invalid type: map", "invalid type: object"),
    ] {
        out = out.replace(rust, api);
    }
    out
}

/// The checked generation settings of a request.
#[derive(Clone, Debug)]
pub struct GenSettings {
    /// None: until the context is full.
    pub max_tokens: Option<usize>,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub stop: Vec<String>,
    /// Checked ids and biases; -100 becomes -inf.
    pub logit_bias: Vec<(u32, f32)>,
    pub ignore_eos: bool,
    /// What the answer must match (`response_format`, `json_schema`).
    pub constraint: Option<kestrel_grammar::Spec>,
}

impl Sampling {
    /// The generation settings, every field checked (the session id too).
    pub fn settings(&self) -> Result<GenSettings, ApiError> {
        if let Some(id) = &self.session_id {
            check_session_id(id)?;
        }
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad_request(format!(
                    "n = {n} is not supported (one choice per request)"
                ))
                .param("n"));
            }
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
            return Err(ApiError::bad_request(format!(
                "temperature must be between 0 and 2, got {temperature}"
            ))
            .param("temperature"));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(
                ApiError::bad_request(format!("top_p must be in (0, 1], got {top_p}"))
                    .param("top_p"),
            );
        }
        let max = self.max_completion_tokens.or(self.max_tokens);
        if max == Some(0) {
            return Err(ApiError::bad_request("max_tokens must be at least 1").param("max_tokens"));
        }
        let stop = self.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
        if stop.len() > 4 {
            return Err(ApiError::bad_request("at most 4 stop sequences").param("stop"));
        }
        let seed = match self.seed {
            Some(s) => s as u64,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        };
        let mut logit_bias = Vec::new();
        for (k, &v) in self.logit_bias.iter().flatten() {
            let id: u32 = k.parse().map_err(|_| {
                ApiError::bad_request(format!("logit_bias key {k:?} is not a token id"))
                    .param("logit_bias")
            })?;
            if !(-100.0..=100.0).contains(&v) {
                return Err(ApiError::bad_request(format!(
                    "logit_bias for token {id} must be between -100 and 100, got {v}"
                ))
                .param("logit_bias"));
            }
            // OpenAI: -100 "should result in a ban".
            logit_bias.push((id, if v <= -100.0 { f32::NEG_INFINITY } else { v }));
        }
        let constraint = self.constraint()?;
        Ok(GenSettings {
            constraint,
            max_tokens: max.map(|m| m.min(usize::MAX as u64) as usize),
            temperature,
            top_p,
            seed,
            stop,
            logit_bias,
            ignore_eos: self.ignore_eos,
        })
    }

    /// The structured-output fields as one constraint (at most one may be given).
    fn constraint(&self) -> Result<Option<kestrel_grammar::Spec>, ApiError> {
        use kestrel_grammar::Spec;
        if self.grammar.is_some() {
            return Err(ApiError::bad_request(
                "GBNF grammars are not supported; send a JSON schema (response_format or json_schema)",
            )
            .param("grammar"));
        }
        let from_format = match &self.response_format {
            None | Some(ResponseFormat::Text) => None,
            Some(ResponseFormat::JsonObject) => Some(Spec::JsonObject),
            Some(ResponseFormat::JsonSchema { json_schema }) => match &json_schema.schema {
                Some(v) if v.is_object() || v.is_boolean() => Some(Spec::JsonSchema(v.clone())),
                _ => {
                    return Err(ApiError::bad_request(
                        "response_format json_schema needs a schema object",
                    )
                    .param("response_format.json_schema.schema"))
                }
            },
        };
        match (from_format, &self.json_schema) {
            (Some(_), Some(_)) => Err(ApiError::bad_request(
                "give the schema once: response_format or json_schema, not both",
            )
            .param("json_schema")),
            (Some(s), None) => Ok(Some(s)),
            (None, Some(v)) => Ok(Some(Spec::JsonSchema(v.clone()))),
            (None, None) => Ok(None),
        }
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }
}

/// `session_id`s name files under `--session-dir`: only a safe alphabet, so no path can leave it.
pub fn check_session_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "session_id must be 1-64 characters of A-Z, a-z, 0-9, '-' and '_'",
        )
        .param("session_id"))
    }
}

impl Message {
    /// The text of the message (text parts joined).
    pub fn text(&self) -> Result<String, ApiError> {
        match &self.content {
            None => Ok(String::new()),
            Some(Content::Text(s)) => Ok(s.clone()),
            Some(Content::Parts(parts)) => {
                let mut out = String::new();
                for p in parts {
                    if p.kind != "text" {
                        return Err(ApiError::bad_request(format!(
                            "content part type '{}' is not supported (text only)",
                            p.kind
                        ))
                        .param("messages"));
                    }
                    out.push_str(p.text.as_deref().unwrap_or(""));
                }
                Ok(out)
            }
        }
    }
}
