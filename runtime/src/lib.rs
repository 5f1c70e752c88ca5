//! The authflow runtime: binds requests into fixed-layout records, evaluates
//! compiled flows with a constant-time kernel, and returns outcomes and
//! audit traces.

pub mod bind;
pub mod engine;
pub mod factor;
pub mod json;
pub mod kernel;
pub mod native;
pub mod outcome;
pub mod program;
pub mod typed;
pub mod value;

pub use bind::InputError;
pub use engine::{Backend, EvalError, FlowState, Policy, Scratch};
pub use outcome::Outcome;
