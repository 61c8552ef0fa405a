//! Read `tokenizer.ggml.*` metadata into a [`TokenizerConfig`].

use kestrel_gguf::GgufFile;

use crate::{TokenizerConfig, TokenizerError};

fn e(err: kestrel_gguf::GgufError) -> TokenizerError {
    TokenizerError::Gguf(err.to_string())
}

pub(crate) fn read_config(g: &GgufFile) -> Result<TokenizerConfig, TokenizerError> {
    let model = g
        .get_str_opt("tokenizer.ggml.model")
        .map_err(e)?
        .ok_or_else(|| TokenizerError::Missing("tokenizer.ggml.model".into()))?
        .to_string();
    let tokens = g
        .get_str_array_opt("tokenizer.ggml.tokens")
        .map_err(e)?
        .ok_or_else(|| TokenizerError::Missing("tokenizer.ggml.tokens".into()))?
        .to_vec();
    let id = |k: &str| -> Result<Option<u32>, TokenizerError> {
        // a negative or odd-typed id means "not set"; never fail the load over it
        match g.get_u32_opt(k) {
            Ok(v) => Ok(v),
            Err(_) => Ok(None),
        }
    };
    Ok(TokenizerConfig {
        model,
        pre: g
            .get_str_opt("tokenizer.ggml.pre")
            .map_err(e)?
            .map(str::to_string),
        tokens,
        scores: g.get_f32_array_opt("tokenizer.ggml.scores").map_err(e)?,
        token_types: g
            .get_i32_array_opt("tokenizer.ggml.token_type")
            .map_err(e)?,
        merges: g
            .get_str_array_opt("tokenizer.ggml.merges")
            .map_err(e)?
            .map(|m| m.to_vec()),
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        eot: id("tokenizer.ggml.eot_token_id")?,
        eom: id("tokenizer.ggml.eom_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        sep: id("tokenizer.ggml.seperator_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        add_bos: g.get_bool_opt("tokenizer.ggml.add_bos_token").map_err(e)?,
        add_eos: g.get_bool_opt("tokenizer.ggml.add_eos_token").map_err(e)?,
        add_space_prefix: g
            .get_bool_opt("tokenizer.ggml.add_space_prefix")
            .map_err(e)?,
        model_name: g
            .get_str_opt("general.name")
            .ok()
            .flatten()
            .map(str::to_string),
    })
}
