//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! annotations and the answer types in [`crate::views`]: served at
//! `/api/v1/openapi.json`, printed by `ticketing openapi`, and kept in the
//! repository as `ticketing/openapi.json` (a test fails when that copy is
//! stale).

use crate::views::ErrorBody;
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Twinport ticketing",
        version = "1",
        description = "The in-branch queue system: kiosks issue tickets, desks call them, boards show them live, \
bookings check in. Errors are JSON {error, message} with a 4xx or 5xx status and change nothing. Every change \
accepts an Idempotency-Key: a repeat acts once and answers as the first did (with Idempotent-Replayed: true); the \
same key with another request is 422 idempotency_key_reused. Everything is of the branch's current local day, \
which ends at its closing time (unfinished tickets become not_served). Prometheus metrics are on the service's \
own metrics listener, not here.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::ready,
        super::live_probe,
        super::openapi,
        super::branch_info,
        super::board,
        super::board_events,
        super::issue,
        super::track,
        super::track_events,
        super::qr,
        super::desk_view,
        super::desk_events,
        super::call_next,
        super::recall,
        super::start,
        super::finish,
        super::no_show,
        super::transfer,
        super::open,
        super::close,
        super::create_booking,
        super::cancel_booking,
        super::stats,
    ),
    components(schemas(crate::views::TicketStatus)),
    modifiers(&BearerTokens),
    tags(
        (name = "public", description = "Anyone: what kiosks, boards and visitors' phones read"),
        (name = "kiosk", description = "A branch's kiosk token"),
        (name = "desk", description = "A branch's desk token"),
        (name = "manager", description = "A branch's manager token"),
        (name = "service", description = "The service itself"),
    )
)]
struct ApiDoc;

/// The kiosk, desk and manager tokens of a branch: bearer tokens.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for role in ["kiosk", "desk", "manager"] {
            components.add_security_scheme(
                role,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(format!("the branch's {role} token")))
                        .build(),
                ),
            );
        }
    }
}

/// The document as pretty JSON.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct BranchPath {
    /// The branch's id, e.g. `centrum`.
    branch: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct TicketPath {
    /// The ticket's id (from its QR code or tracking URL).
    id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct DeskPath {
    branch: String,
    /// The desk's id in the branch.
    desk: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct BookingPath {
    branch: String,
    /// The booking's code (case does not matter).
    code: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub(super) struct IdempotencyKey {
    /// 1-128 visible ASCII characters; a repeat with the same key acts
    /// once and answers as the first did.
    #[serde(rename = "Idempotency-Key")]
    #[param(max_length = 128)]
    key: Option<String>,
}

/// What a read of public data may answer besides 200.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum NotFound {
    /// No such branch or ticket.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The queue store does not answer; try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What a read with a token may answer besides 200.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum ReadErrors {
    /// No valid bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A token of another role or branch.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such branch, desk or booking.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Not possible as asked (an invalid day, say).
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// The queue store does not answer; try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What a change may answer besides its success; none of these changed
/// anything.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum ChangeErrors {
    /// A malformed body or `Idempotency-Key`.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No valid bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A token of another role or branch.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such branch, desk, ticket or booking.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Refused by the state: the branch is closed, the desk has no ticket
    /// to act on, the desk transferred to is closed…
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is over 8 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not possible as asked: an unknown service, priority group or desk,
    /// an invalid booking code or slot, or `idempotency_key_reused` (the
    /// key was used for another request).
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// The queue store does not answer; try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// The store's disk is full: nothing was changed; retry later.
    #[response(status = 507)]
    StorageFull(ErrorBody),
}

#[cfg(test)]
mod tests {
    /// The copy in the repository is what the code generates: regenerate
    /// it with `cargo run -p ticketing -- --openapi > ticketing/openapi.json`.
    #[test]
    fn the_repository_s_openapi_json_is_the_generated_one() {
        let kept = include_str!("../../openapi.json");
        assert!(
            kept == super::document(),
            "ticketing/openapi.json is stale: run `cargo run -p ticketing -- --openapi > ticketing/openapi.json`"
        );
    }
}
