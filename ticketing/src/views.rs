//! What the API answers: one type per JSON body. The OpenAPI document
//! ([`crate::openapi`]) is generated from these types and the handlers'
//! annotations, so the two cannot drift apart.

use crate::config::Names;
use serde::Serialize;
use utoipa::ToSchema;

/// A ticket's state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // documents the strings the store keeps
pub enum TicketStatus {
    Waiting,
    Called,
    Serving,
    Done,
    NoShow,
    /// The day ended before it was served.
    NotServed,
}

/// What a kiosk shows and prints, and what tracking shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Ticket)]
pub struct TicketView {
    pub id: String,
    pub branch: String,
    /// The number as people see it.
    #[schema(example = "A017")]
    pub display: String,
    /// The service it waits for now (after any transfer).
    pub service: String,
    pub service_name: Names,
    #[schema(value_type = TicketStatus)]
    pub status: String,
    /// The desk that called it.
    pub desk: Option<String>,
    /// Visitors of the same service before this one.
    pub position: usize,
    /// `null` while no open desk serves the service, and once called.
    pub estimated_wait_seconds: Option<i64>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub issued_at: String,
    pub tracking_url: String,
}

/// A kiosk's view before a touch.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Branch)]
pub struct BranchView {
    pub id: String,
    pub name: String,
    /// IANA time zone of the branch's local day.
    #[schema(example = "Europe/Warsaw")]
    pub time_zone: String,
    /// Open now by its opening hours.
    pub open: bool,
    pub services: Vec<ServiceQueue>,
    pub priority_groups: Vec<PriorityGroupView>,
    pub desks: Vec<DeskServices>,
}

/// One service's queue as a kiosk shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceQueue {
    pub prefix: String,
    pub name: Names,
    pub waiting: usize,
    pub desks_open: usize,
    /// `null` while no open desk serves the service.
    pub estimated_wait_seconds: Option<i64>,
    pub target_wait_seconds: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = PriorityGroup)]
pub struct PriorityGroupView {
    pub id: String,
    pub name: Names,
}

/// A desk and the services it serves, in its order of preference.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeskServices {
    pub id: String,
    pub services: Vec<String>,
}

/// The display board: numbers and desks only, no personal data.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Board)]
pub struct BoardView {
    pub branch: String,
    pub name: String,
    /// The latest calls, newest first.
    pub calls: Vec<BoardCall>,
    /// Visitors waiting, per service prefix.
    pub waiting: std::collections::BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BoardCall {
    pub display: String,
    pub desk: Option<String>,
    /// Unix ms.
    pub called_at: Option<i64>,
    pub recalls: i64,
    #[schema(value_type = TicketStatus)]
    pub status: String,
}

/// A desk's console.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Desk)]
pub struct DeskView {
    pub branch: String,
    pub desk: String,
    pub open: bool,
    /// The ticket it called or serves.
    pub current: Option<TicketView>,
    pub queues: Vec<DeskQueue>,
    /// Where a ticket can be transferred: services…
    pub transfer_services: Vec<ServiceName>,
    /// …and the other desks.
    pub transfer_desks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeskQueue {
    pub service: String,
    pub waiting: usize,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceName {
    pub prefix: String,
    pub name: Names,
}

/// The answer to call-next.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Called {
    /// `null` when nobody waits for the desk's services.
    pub called: Option<TicketView>,
    /// Why nobody was called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A cancelled booking.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Cancelled {
    pub code: String,
    #[schema(example = "cancelled")]
    pub status: String,
}

/// Statistics of one branch-local day.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Stats)]
pub struct StatsView {
    pub branch: String,
    /// YYYY-MM-DD, the branch's local day.
    pub day: String,
    /// The day has ended and was closed (unfinished tickets not served).
    pub closed: bool,
    pub services: Vec<ServiceStats>,
    pub per_hour: Vec<HourStats>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceStats {
    pub service: String,
    pub name: Names,
    /// Numbers given for this service.
    pub issued: usize,
    pub served: usize,
    pub no_shows: usize,
    /// Still waiting, called or served when the day ended.
    pub not_served: usize,
    /// Their wait until called, or until the day ended.
    pub not_served_mean_wait_seconds: Option<i64>,
    pub waiting_now: usize,
    pub mean_wait_seconds: Option<i64>,
    pub max_wait_seconds: Option<i64>,
    pub mean_service_seconds: Option<i64>,
    /// Share of calls within the target wait (0 to 1).
    pub within_target_share: Option<f64>,
    pub target_wait_seconds: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HourStats {
    /// Local hour, 0-23.
    pub hour: u32,
    pub issued: usize,
    pub no_shows: usize,
    pub not_served: usize,
}

/// Every error: a 4xx or 5xx status with this body, and nothing changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// A stable code, e.g. `unknown_service`, `idempotency_key_reused`.
    pub error: String,
    pub message: String,
}

/// `GET /ready`: what the gateway reads.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    pub node: String,
    #[schema(example = "ready")]
    pub state: String,
    /// Share of traffic wanted, percent (when ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why it is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /live`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Liveness {
    pub alive: bool,
}
