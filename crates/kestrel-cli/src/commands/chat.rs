use crate::args::{ModelArgs, SampleArgs};
use clap::Args;
use kestrel_engine::{ChatMessage, Engine, GenParams, StopReason};
use std::io::{BufRead, IsTerminal, Write};

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sample: SampleArgs,
    /// System message at the start of the conversation
    #[arg(long = "system")]
    system: Option<String>,
    /// Tokens per reply at most
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    n_predict: usize,
}

const HELP: &str = "commands: /reset clears the conversation (the system message stays), /help shows this, /exit or Ctrl-D quits";

pub fn run(a: ChatArgs) -> anyhow::Result<()> {
    a.sample
        .config()
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid sampling settings: {e}"))?;
    let engine = a.model.load()?;
    crate::args::warn_if_builtin(&engine);
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "kestrel chat — template: {}, context {} tokens; /help for commands.",
            engine.template.name(),
            engine.n_ctx()
        );
    }
    let mut messages: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage::new("system", s.as_str()));
    }
    let base = messages.clone();
    let params = GenParams {
        max_tokens: a.n_predict,
        sampler: a.sample.config(),
        stop: Vec::new(),
        ignore_eos: false,
        constraint: None,
    };
    // Positions kept free for the reply when older turns must go.
    let room = a.n_predict.clamp(1, (engine.n_ctx() / 4).max(1));
    let mut seq = engine.new_sequence();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            write!(out, "> ")?;
            out.flush()?;
        }
        let Some(line) = lines.next() else {
            // Ctrl-D: end the prompt line.
            if interactive {
                writeln!(out)?;
            }
            break;
        };
        let line = line?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/help" => {
                eprintln!("{HELP}");
                continue;
            }
            "/reset" => {
                messages = base.clone();
                eprintln!("[conversation cleared]");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage::new("user", text));
        let prompt = match fit(&engine, &mut messages, base.len(), room) {
            Ok(p) => p,
            Err(e) => {
                messages.pop();
                eprintln!("kestrel: {e}");
                continue;
            }
        };
        let g = match engine.generate(&mut seq, &prompt, &params, &mut |t| {
            write!(out, "{t}").and_then(|_| out.flush()).is_ok()
        }) {
            Ok(g) => g,
            Err(e) => {
                messages.pop();
                eprintln!("kestrel: {e}; /reset to start over");
                continue;
            }
        };
        writeln!(out)?;
        messages.push(ChatMessage::new("assistant", g.text.trim()));
        if g.stop_reason == StopReason::ContextFull {
            eprintln!("[the reply filled the context; older turns make room at the next message]");
        }
        if interactive {
            eprintln!(
                "[{} tokens, {:.1} tok/s, reused {} cached prompt tokens, {}]",
                g.timings.n_gen,
                g.timings.gen_tps(),
                g.timings.n_prompt_reused,
                crate::util::peak_rss_text()
            );
        }
    }
    Ok(())
}

/// The conversation's prompt, dropping the oldest turns after the first `keep` messages (the
/// system message) until it leaves `room` positions for the reply; each drop is announced.
/// An error when even the last message alone does not fit.
fn fit(
    engine: &Engine,
    messages: &mut Vec<ChatMessage>,
    keep: usize,
    room: usize,
) -> anyhow::Result<Vec<u32>> {
    let n_ctx = engine.n_ctx();
    loop {
        let prompt = engine.tokenize_chat(messages)?;
        if prompt.len() + room <= n_ctx {
            return Ok(prompt);
        }
        if messages.len() <= keep + 1 {
            anyhow::bail!(
                "this message is {} tokens with the template; with {room} for the reply it does not fit the context of {n_ctx} (-c)",
                prompt.len()
            );
        }
        // A user turn and the reply after it go together.
        let n = if messages.len() > keep + 2 { 2 } else { 1 };
        messages.drain(keep..keep + n);
        eprintln!(
            "[the conversation outgrew the context of {n_ctx} tokens: dropped its oldest exchange]"
        );
    }
}
