use crate::args::{ModelArgs, SampleArgs};
use clap::Args;
use kestrel_engine::{ChatMessage, GenParams};
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

pub fn run(a: ChatArgs) -> anyhow::Result<()> {
    a.sample
        .config()
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid sampling settings: {e}"))?;
    let engine = a.model.load()?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "kestrel chat — template: {}; /reset clears the conversation, /exit or Ctrl-D quits.",
            engine.template.name()
        );
    }
    let mut messages: Vec<ChatMessage> = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
        });
    }
    let base = messages.clone();
    let params = GenParams {
        max_tokens: a.n_predict,
        sampler: a.sample.config(),
        stop: Vec::new(),
        ignore_eos: false,
    };
    let mut seq = engine.new_sequence();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            write!(out, "> ")?;
            out.flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                messages = base.clone();
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: text.to_string(),
        });
        let prompt = engine.tokenize_chat(&messages)?;
        let g = match engine.generate(&mut seq, &prompt, &params, &mut |t| {
            write!(out, "{t}").and_then(|_| out.flush()).is_ok()
        }) {
            Ok(g) => g,
            Err(e) => {
                // The conversation outgrew the context: say so and drop this turn.
                messages.pop();
                eprintln!("kestrel: {e}; /reset to start over");
                continue;
            }
        };
        writeln!(out)?;
        messages.push(ChatMessage {
            role: "assistant".into(),
            content: g.text.trim().to_string(),
        });
        if interactive {
            eprintln!(
                "[{} tokens, {:.1} tok/s, reused {} cached prompt tokens]",
                g.timings.n_gen,
                g.timings.gen_tps(),
                g.timings.n_prompt_reused
            );
        }
    }
    Ok(())
}
