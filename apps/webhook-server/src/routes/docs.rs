//! `GET /openapi.json` and interactive API docs (Swagger UI) at `/docs/`,
//! both served from the binary: the Swagger UI files are vendored at build
//! time (`utoipa-swagger-ui`'s `vendored` feature), no CDN is involved.
//!
//! The files are served by [`utoipa_swagger_ui::serve`] through our own
//! routes rather than its actix service, which answers GET only: here HEAD
//! works as on every other page, and other methods get 405.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use utoipa_swagger_ui::Config;

use super::readable;

/// The OpenAPI document, written by hand next to this file.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Where the UI reads the document from.
const OPENAPI_PATH: &str = "/openapi.json";

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    // Swagger UI's default would send the document's address to
    // validator.swagger.io from any page not on localhost.
    let ui = Arc::new(Config::new([OPENAPI_PATH]).validator_url("none"));
    cfg.service(readable(OPENAPI_PATH, openapi))
        .service(readable("/docs", redirect))
        .service(readable(
            "/docs/{file:.*}",
            move |file: web::Path<String>| {
                let ui = Arc::clone(&ui);
                async move { ui_file(&file, ui) }
            },
        ));
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

async fn redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}

/// One file of the vendored Swagger UI (`index.html` for the folder).
fn ui_file(file: &str, ui: Arc<Config<'static>>) -> HttpResponse {
    match utoipa_swagger_ui::serve(file, ui) {
        Ok(Some(f)) => HttpResponse::Ok()
            .content_type(f.content_type)
            .body(f.bytes.into_owned()),
        Ok(None) => actix_web::ResponseError::error_response(&crate::error::Error::NotFound),
        Err(e) => {
            // Only the initializer is rewritten (with our config); a
            // failure there is a bug of ours, not the client's.
            tracing::error!(file, error = %e, "cannot serve a Swagger UI file");
            HttpResponse::InternalServerError().finish()
        }
    }
}
