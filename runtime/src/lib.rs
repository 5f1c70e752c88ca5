//! The authflow runtime: binds requests into fixed-layout records, evaluates
//! compiled flows with a constant-time kernel, and returns outcomes and
//! audit traces.

pub mod factor;
pub mod value;
