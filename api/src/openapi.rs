//! The parts of `/openapi.json` that every operation shares, added to the document once rather
//! than repeated on each route: the bearer scheme, the error responses (401 where a token is
//! needed, 400 where a path or query parameter can be malformed, 500 on every `/v1` route), and
//! for each error status its description, the error envelope's schema, an example per code and
//! `Retry-After` on 429. A route's annotation lists only the error statuses particular to it.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    Content, HeaderBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response, Type,
    example::ExampleBuilder,
};

use crate::error::CODES;

/// The name of the bearer scheme in `components.securitySchemes`.
pub const BEARER: &str = "bearer";

/// Form fields of `POST /v1/jobs`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: the handler reads the form part by part.
pub struct JobForm {
    /// The photo, signature or scan (JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC), recognised by its
    /// content, never its name.
    #[schema(format = Binary, value_type = String)]
    file: Vec<u8>,
    /// A portal rule's slug (`GET /v1/portal-schemas`).
    #[schema(example = "neet-ug-2026-photo")]
    portal: String,
}

/// One requirement of a rule and how the checked file meets it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: the handler returns the pipeline's report.
pub struct CheckLine {
    /// The requirement: `format`, `pixels`, `dpi`, `size`, `colour`, `orientation`,
    /// `background`, `face`, `face_height`, `face_centre`.
    #[schema(example = "size")]
    rule: String,
    /// `true` met, `false` not met, `null` not checked (the message says why).
    #[schema(example = false)]
    passed: Option<bool>,
    /// What the rule asks.
    #[schema(example = "10–100 KB (10240–100000 bytes)")]
    expected: String,
    /// What the file has (empty when not checked).
    #[schema(example = "212 KB (217088 bytes)")]
    found: String,
    /// One sentence for the student.
    #[schema(example = "212 KB; NEET allows 10–100 KB (at most 100000 bytes)")]
    message: String,
}

/// A file checked against a portal rule (`POST /v1/checks`; a completed job's `report`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: the handler returns the pipeline's report.
pub struct CheckReport {
    /// The rule's slug.
    #[schema(example = "neet-ug-2026-photo")]
    portal: String,
    /// No line failed (lines not checked do not count against it).
    compliant: bool,
    checks: Vec<CheckLine>,
}

/// Form fields of `POST /v1/batches`: the n-th `portal` goes with the n-th `file`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: the handler reads the form part by part.
pub struct BatchForm {
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
    #[schema(example = json!(["neet-ug-2026-photo", "neet-ug-2026-signature"]))]
    portal: Vec<String>,
}

/// Adds the bearer scheme and the shared error responses.
pub struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, doc: &mut OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                BEARER,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "a JWT whose `sub` is the user's UUID (`rythmiq token --user UUID`)",
                        ))
                        .build(),
                ),
            );
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                complete(path, op);
            }
        }
    }
}

/// Adds the statuses every operation like `op` can answer with, then describes each error.
fn complete(path: &str, op: &mut Operation) {
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_params = op.parameters.iter().flatten().any(|p| {
        matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query)
            && p.name != "exp"
            && p.name != "sig"
    });
    let mut extra = Vec::new();
    if secured {
        extra.push(401);
    }
    if has_params {
        extra.push(400);
    }
    if path.starts_with("/v1/") {
        extra.push(500);
    }
    for status in extra {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Response::new("")));
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let (Ok(status), RefOr::T(response)) = (status.parse::<u16>(), response) else {
            continue;
        };
        if status >= 400 {
            describe_error(status, response);
        }
    }
}

/// The envelope's schema, the codes this status carries (with an example of each) and, for
/// 429, the `Retry-After` header.
fn describe_error(status: u16, response: &mut Response) {
    let codes: Vec<_> = CODES.iter().filter(|(_, s, _)| *s == status).collect();
    if codes.is_empty() {
        return; // not an error envelope (e.g. `/readyz`'s 503)
    }
    let when: Vec<String> = codes
        .iter()
        .map(|(code, _, when)| format!("`{code}`: {when}"))
        .collect();
    response.description = when.join("; ");
    let mut content = Content::new(Some(Ref::from_schema_name("ErrorBody")));
    for (code, ..) in &codes {
        let example =
            serde_json::json!({"error": {"code": code, "message": example_message(code)}});
        content.examples.insert(
            (*code).to_owned(),
            RefOr::T(ExampleBuilder::new().value(Some(example)).build()),
        );
    }
    response.content.insert("application/json".into(), content);
    if status == 429 {
        response.headers.insert(
            "Retry-After".into(),
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0))
                        .examples([20]),
                )
                .description(Some("seconds until the request would be admitted"))
                .build(),
        );
    }
}

/// An example message for `code`, as the API would write it.
fn example_message(code: &str) -> &'static str {
    match code {
        "INVALID_REQUEST" => "invalid path: Cannot parse `id` with value `0` to a `Uuid`",
        "PAYLOAD_MISSING" => "form field `file` is missing",
        "UNAUTHORIZED" => "missing or invalid bearer token",
        "INSUFFICIENT_CREDITS" => "no credits left: every job costs one credit",
        "LINK_INVALID" => "the link expired at 2026-05-01 10:00:00 UTC",
        "NOT_FOUND" => "not found",
        "METHOD_NOT_ALLOWED" => {
            "this method is not allowed on this path; the Allow header lists the ones that are"
        }
        "OUTPUT_EXPIRED" => {
            "the output was deleted after its retention period; submit the upload again"
        }
        "PAYLOAD_TOO_LARGE" => "the upload is larger than the limit of 20971520 bytes",
        "PAYLOAD_INVALID" => "the file is not a supported image",
        "TOO_MANY_FILES" => "too many files: a batch holds at most 10",
        "UNKNOWN_PORTAL" => "unknown portal \"neet\"; GET /v1/portal-schemas lists the valid slugs",
        "IDEMPOTENCY_KEY_REUSED" => "this Idempotency-Key was used for a different request",
        "RATE_LIMITED" => "too many jobs: at most 30 per minute; retry after 20 s",
        _ => "internal error",
    }
}
