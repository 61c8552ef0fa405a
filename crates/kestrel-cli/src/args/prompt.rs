//! Where `kestrel run` takes its prompt from: `-p TEXT`, a positional argument, `-f FILE` or
//! stdin, with `\n`-style escapes in the typed forms (llama.cpp's `-e`, on by default here too),
//! and `--chat` to send it as a user message through the model's chat template (`--system`
//! before it), the way an instruct model expects it.

use clap::Args;
use kestrel_engine::{ChatMessage, Engine};
use std::io::{IsTerminal, Read};
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct PromptArgs {
    /// The prompt (special-token text such as <|im_start|> is parsed)
    #[arg(value_name = "PROMPT", conflicts_with_all = ["prompt", "file"])]
    positional: Option<String>,
    /// The prompt, as -p TEXT
    #[arg(short = 'p', long = "prompt", conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the prompt from this file ('-' for stdin); without any prompt, stdin is read when it is not a terminal
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Keep backslash sequences in a typed prompt as they are (by default \n, \t, \r, \\, \" and \' are turned into the characters)
    #[arg(long = "no-escape")]
    no_escape: bool,
    /// Send the prompt as a user message through the model's chat template, with the assistant's turn opened
    #[arg(long = "chat")]
    chat: bool,
    /// With --chat: a system message before it
    #[arg(long = "system", requires = "chat")]
    system: Option<String>,
}

/// A prompt ready to run.
pub struct Prompt {
    /// What the model is given, as text (the rendered conversation with --chat).
    pub text: String,
    pub tokens: Vec<u32>,
}

impl PromptArgs {
    /// The prompt's text as given.
    fn raw(&self) -> anyhow::Result<String> {
        let typed = self.positional.as_ref().or(self.prompt.as_ref());
        if let Some(t) = typed {
            return Ok(if self.no_escape {
                t.clone()
            } else {
                unescape(t)
            });
        }
        let read_stdin = || -> anyhow::Result<String> {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| anyhow::anyhow!("reading the prompt from stdin: {e}"))?;
            Ok(s)
        };
        match &self.file {
            Some(p) if p.as_os_str() == "-" => read_stdin(),
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("reading the prompt from {}: {e}", p.display())),
            None if !std::io::stdin().is_terminal() => read_stdin(),
            None => anyhow::bail!(
                "no prompt: give one as an argument, with -p TEXT or -f FILE, or on stdin"
            ),
        }
    }

    /// The prompt for `engine`: tokenized as given, or rendered as a chat turn with `--chat`.
    pub fn resolve(&self, engine: &Engine) -> anyhow::Result<Prompt> {
        let user = self.raw()?;
        if !self.chat {
            let tokens = engine.tokenize_prompt(&user)?;
            return Ok(Prompt { text: user, tokens });
        }
        warn_if_builtin(engine);
        let mut messages = Vec::new();
        if let Some(s) = &self.system {
            messages.push(ChatMessage::new("system", s.as_str()));
        }
        messages.push(ChatMessage::new("user", user.as_str()));
        let text = engine.template.render(&messages, true)?;
        let tokens = engine.tokenize_chat(&messages)?;
        Ok(Prompt { text, tokens })
    }
}

/// A model without a chat template of its own gets a built-in format guessed from its
/// vocabulary; say so, since an instruct model answers badly in the wrong one.
pub fn warn_if_builtin(engine: &Engine) {
    if engine.template.is_builtin() {
        eprintln!(
            "kestrel: warning: the model file has no chat template; using {}",
            engine.template.name()
        );
    }
}

/// `\n`, `\t`, `\r`, `\\`, `\"` and `\'` as the characters; any other backslash stays.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn escapes_become_characters_and_others_stay() {
        assert_eq!(unescape(r#"a\nb\tc\\d\"e\'f"#), "a\nb\tc\\d\"e'f");
        assert_eq!(unescape(r"C:\path\x41 end\"), "C:\\path\\x41 end\\");
    }
}
