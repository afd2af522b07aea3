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
use crate::platforms::Platforms;

/// The OpenAPI document, written by hand next to this file.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Where the UI reads the document from.
const OPENAPI_PATH: &str = "/openapi.json";

pub(crate) fn configure(cfg: &mut web::ServiceConfig, admin_enabled: bool, platforms: &Platforms) {
    // Swagger UI's default would send the document's address to
    // validator.swagger.io from any page not on localhost.
    let ui = Arc::new(Config::new([OPENAPI_PATH]).validator_url("none"));
    let document: Arc<str> = Arc::from(served_document(admin_enabled, platforms));
    cfg.service(readable(OPENAPI_PATH, move || {
        let document = Arc::clone(&document);
        async move {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(document.to_string())
        }
    }))
    .service(readable("/docs", redirect))
    .service(readable(
        "/docs/{file:.*}",
        move |file: web::Path<String>| {
            let ui = Arc::clone(&ui);
            async move { ui_file(&file, ui) }
        },
    ));
}

/// [`OPENAPI`] without the routes this server does not serve: the admin API
/// when no token is set, and the webhook routes of platforms not compiled
/// in. A client generated from the document (or a contract tester) would
/// otherwise call routes that answer 404.
fn served_document(admin_enabled: bool, platforms: &Platforms) -> String {
    let served = |path: &str| match path.strip_prefix("/webhooks/") {
        Some(rest) => platforms
            .get(rest.split('/').next().unwrap_or_default())
            .is_some(),
        None => admin_enabled || !path.starts_with("/admin"),
    };
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(OPENAPI) else {
        return OPENAPI.to_owned();
    };
    let Some(paths) = doc
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return OPENAPI.to_owned();
    };
    let all_platforms = ["shopify", "woocommerce"]
        .iter()
        .all(|p| platforms.get(p).is_some());
    if all_platforms && paths.keys().all(|p| served(p)) {
        // As written (key order kept).
        return OPENAPI.to_owned();
    }
    paths.retain(|path, _| served(path));
    // The admin list's `platform` filter: the platforms compiled in.
    if let Some(parameters) = paths
        .get_mut("/admin/events")
        .and_then(|p| p.pointer_mut("/get/parameters"))
        .and_then(serde_json::Value::as_array_mut)
    {
        for parameter in parameters {
            if parameter["name"] == "platform"
                && let Some(values) = parameter
                    .pointer_mut("/schema/enum")
                    .and_then(serde_json::Value::as_array_mut)
            {
                values.retain(|v| {
                    v.as_str()
                        .is_some_and(|v| v.is_empty() || platforms.get(v).is_some())
                });
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| OPENAPI.to_owned())
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
