//! Flag groups shared by several verbs, one definition each.

mod collaboration;
mod constrain;
mod model;
mod prompt;
mod sampling;
mod speculative;

pub use collaboration::{RouteArgs, SplitArgs, VerifyArgs};
pub use constrain::ConstrainArgs;
pub use model::{check_tensors, EvalArgs, ModelArgs, ScoreArgs};
pub use prompt::{warn_if_builtin, PromptArgs};
pub use sampling::SampleArgs;
pub use speculative::SpecArgs;
