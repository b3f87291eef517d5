//! `GET /v1/models` and `GET /v1/models/{id}`: the catalog in OpenAI's shape plus our
//! extension fields (context window, capabilities, pricing).

use axum::extract::{Path, State};
use axum::{Extension, Json};
use switchboard_api::{ListModelsResponse, ModelEntry, Pricing};
use switchboard_gateway::{Caller, CatalogEntry, Gateway};

use crate::{ApiError, AppState};

/// The catalog, as far as the caller's key may use it.
pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<ListModelsResponse> {
    let entries = state.gateway.catalog.entries();
    Json(ListModelsResponse::new(
        entries
            .iter()
            .filter(|e| caller.may_use(&e.id).is_ok())
            .map(|e| wire(&state.gateway, e))
            .collect(),
    ))
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ModelEntry>, ApiError> {
    caller.may_use(&id)?;
    Ok(Json(wire(&state.gateway, state.gateway.catalog.get(&id)?)))
}

fn wire(gateway: &Gateway, entry: &CatalogEntry) -> ModelEntry {
    ModelEntry::new(
        entry.id.clone(),
        entry.created,
        entry.owned_by.clone(),
        entry.context_window,
        entry
            .capabilities
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        Pricing {
            cached_input_per_million: entry.pricing.cached_input_per_million,
            per_web_search: gateway.price_per_web_search(entry),
            ..Pricing::usd(
                entry.pricing.input_per_million,
                entry.pricing.output_per_million,
            )
        },
    )
}
