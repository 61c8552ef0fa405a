use clap::Args;
use kestrel_gguf::GgufFile;
use kestrel_tokenizer::Tokenizer;
use std::path::PathBuf;

#[derive(Args)]
pub struct TokenizeArgs {
    /// GGUF model file [default: SmolLM2-135M-Instruct Q4_1, fetched into the cache if missing]
    #[arg(short = 'm', long = "model")]
    model: Option<PathBuf>,
    /// Add BOS/EOS as the model's metadata asks
    #[arg(long = "add-special")]
    add_special: bool,
    /// Turn special-token text (e.g. <|im_start|>) into special tokens
    #[arg(long = "parse-special")]
    parse_special: bool,
    /// Print {"ids": [...]}
    #[arg(long = "json")]
    json: bool,
    /// The text to tokenize
    text: String,
}

pub fn run(a: TokenizeArgs) -> anyhow::Result<()> {
    let path = crate::models::resolve(a.model.as_deref())?;
    let g = GgufFile::open(&path)?;
    let tok = Tokenizer::from_gguf(&g)?;
    let ids = tok.encode(&a.text, a.add_special, a.parse_special)?;
    if a.json {
        println!("{}", serde_json::json!({ "ids": ids }));
    } else {
        for id in ids {
            let piece = String::from_utf8_lossy(tok.token_to_piece(id, true)).into_owned();
            println!("{id:>8} {piece:?}");
        }
    }
    Ok(())
}
