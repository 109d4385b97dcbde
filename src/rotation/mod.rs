//! The rotation engine: CURRENT/LAST planning and its safe execution against IAM and the
//! stores. It knows nothing of the command line or the terminal.

mod engine;
mod plan;
mod report;

pub use engine::{Engine, EngineOptions, RotateError, Target};
pub use plan::{plan, Plan, PlanError, MAX_KEYS};
pub use report::{KeyView, Outcome, UserReport};
