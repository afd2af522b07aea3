//! `GET /openapi.json` and interactive API docs (Swagger UI) at `/docs/`,
//! both served from the binary: the Swagger UI files are vendored at build
//! time (`utoipa-swagger-ui`'s `vendored` feature), no CDN is involved.

use actix_web::{HttpResponse, web};
use utoipa_swagger_ui::{Config, SwaggerUi};

/// The OpenAPI document, written by hand next to this file.
pub const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    let doc: serde_json::Value = match serde_json::from_str(OPENAPI) {
        Ok(v) => v,
        Err(e) => {
            // Tested to parse; never taken down by it.
            tracing::error!(error = %e, "embedded OpenAPI document does not parse");
            serde_json::json!({})
        }
    };
    cfg.route("/docs", web::get().to(redirect)).service(
        SwaggerUi::new("/docs/{_:.*}")
            .external_url_unchecked("/openapi.json", doc)
            // Swagger UI would otherwise send the document's address to
            // validator.swagger.io from any page not on localhost.
            .config(Config::default().validator_url("none")),
    );
}

async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}
