//! The rotation engine: CURRENT/LAST planning, staged retirement, and their safe execution
//! against IAM and the stores. It knows nothing of the command line or the terminal.

mod engine;
mod events;
mod hooks;
mod inflight;
mod planner;
mod report;
mod retire;

pub use engine::{Engine, EngineOptions, KeyMaker, RotateError, Target};
pub use events::{AccountEvents, DiscardEvents, Event, EventSink};
pub use hooks::AfterRotate;

pub use inflight::InflightRecords;
pub use planner::{current as current_key, Plan, PlanError, Step, MAX_KEYS};
pub use report::{HookReport, KeyView, Outcome, UserReport};
pub use retire::{
    decide as decide_retirement, is_own_verification, parse_tag_time, RetireFacts, Retirement,
    DEACTIVATED_TAG, OWN_VERIFICATION_WINDOW, VERIFIED_TAG,
};
