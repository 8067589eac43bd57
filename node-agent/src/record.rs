//! The record of an upgrade, as `GET /v1/upgrade` and the status show it:
//! plain data that the agent keeps and [`crate::upgrade`] writes, so the
//! agent does not depend on the upgrade that drives it.

use serde::Serialize;

/// One step of an upgrade and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub at: String,
    pub result: &'static str,
    pub detail: String,
}

/// An upgrade: from which version to which, its steps and its result.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeRecord {
    pub from: String,
    pub to: String,
    pub release: String,
    pub started: String,
    pub finished: Option<String>,
    /// `running`, `succeeded`, `rolled_back`, `rollback_failed` or `aborted`.
    pub result: &'static str,
    pub error: Option<String>,
    pub steps: Vec<Step>,
}
