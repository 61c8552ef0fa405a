//! One module per verb: its arguments and what it does.

pub mod bench;
pub mod chat;
pub mod convert;
pub mod imatrix;
pub mod inspect;
pub mod kld;
pub mod logits;
pub mod lowrank;
pub mod perplexity;
pub mod plan_split;
pub mod prune;
pub mod quantize;
pub mod run;
pub mod serve;
pub mod tokenize;
