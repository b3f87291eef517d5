//! `/v1/responses`: create (one body or a stream of semantic events), retrieve, delete, and list
//! a stored response's input items.
//!
//! Creating a response loads the context of `previous_response_id` from the store (only the
//! caller's own responses are visible), asks the gateway to generate from the assembled
//! conversation (dropping the oldest items while it does not fit when `truncation` is `auto`),
//! runs every event through one [`ResponseEncoder`] and, with `store`, saves the result before
//! the final event is sent, so a client can continue from it the moment it sees it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::future::BoxFuture;
use serde_json::Value;
use switchboard_api::responses::{
    decode_context, decode_responses_request, param_name, DeletedResponse, InputItemList,
    ResponseEncoder, ResponsesRequest, Shown, StoredItem,
};
use switchboard_api::sse;
use switchboard_gateway::{Caller, EventStream, Gateway};
use switchboard_model::{Error, ErrorKind, Event, Request};
use switchboard_store::{Store, StoreError, StoredResponse};

use crate::stream::{sse_response, FrameEncoder};
use crate::{body_error, unix_now, ApiError, AppState, RequestId};

pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(slot): Extension<crate::HeaderSlot>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let mut decoded = decode_responses_request(&body, &mut new_item_id)?;
    caller.may_use(&decoded.request.model)?;
    decoded.request.request_id = Some(request_id.clone());
    let previous_context = match &decoded.previous_response_id {
        None => Vec::new(),
        Some(id) => load_previous(&state.store, id, &caller).await?,
    };
    let previous_items = decode_context(&previous_context).map_err(|err| {
        Error::internal(format!("stored context no longer decodes: {}", err.message))
    })?;
    let mut request = decoded.request.clone();
    request.items = decoded.conversation(previous_items);
    switchboard_api::responses::check_call_outputs(&request.items)?;
    // Admitted once the whole conversation is known (its estimate counts the previous
    // context), and only then: a request refused above is no generation of its key's.
    let tracker =
        crate::usage::admit(&state, &caller, &slot, &request, "responses", &request_id).await?;
    let (events, request) = generate_fitting(
        &state.gateway,
        request,
        decoded.truncation_auto,
        decoded.pinned_items(),
    )
    .await;
    let events = tracker.follow(events)?;
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let encoder = ResponseEncoder::new(id, unix_now(), &decoded, &request, Box::new(new_item_id));
    let record = Record::new(&state.store, &caller, &decoded, previous_context);
    if decoded.stream {
        let mut encoder = encoder;
        let initial = encoder.start().iter().map(frame).collect();
        let frames = ResponseFrames {
            encoder,
            record: Some(record),
        };
        Ok(sse_response(events, initial, frames))
    } else {
        let response = fold(events, encoder).await?;
        record.save(&response).await;
        Ok(Json(response.shown(Shown::of(&decoded))).into_response())
    }
}

pub(crate) async fn retrieve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query_params(query)?;
    if query.get("stream").is_some_and(|value| value == "true") {
        return Err(Error::unsupported(
            "stream",
            "Streaming a stored response is only possible for background responses, which this \
             server does not support.",
        )
        .with_code("unsupported_parameter")
        .into());
    }
    let stored = find(&state.store, &id, &caller).await?;
    Ok(Json(stored.response).into_response())
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = state
        .store
        .delete_response(&id, &caller.owner)
        .await
        .map_err(store_error)?;
    if deleted {
        Ok(Json(DeletedResponse::new(id)).into_response())
    } else {
        Err(not_found(&id).into())
    }
}

pub(crate) async fn input_items(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = query_params(query)?;
    let stored = find(&state.store, &id, &caller).await?;
    let page = InputItemList::page(
        &stored.input_items,
        query.get("limit").map(String::as_str),
        query.get("order").map(String::as_str),
        query.get("after").map(String::as_str),
    )?;
    Ok(Json(page).into_response())
}

fn new_item_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Starts the generation; with `truncation: auto`, drops the oldest unpinned item while the
/// conversation does not fit the model's context window. Returns the request as sent.
async fn generate_fitting(
    gateway: &Gateway,
    request: Request,
    truncation_auto: bool,
    pinned: usize,
) -> (Result<EventStream, Error>, Request) {
    let mut request = Arc::new(request);
    loop {
        match gateway.generate(Arc::clone(&request), param_name).await {
            Err(err)
                if err.kind == ErrorKind::ContextLengthExceeded
                    && truncation_auto
                    && request.items.len() > pinned + 1 =>
            {
                Arc::make_mut(&mut request).items.remove(pinned);
            }
            result => {
                let request = Arc::try_unwrap(request).unwrap_or_else(|shared| (*shared).clone());
                return (result, request);
            }
        }
    }
}

async fn fold(
    mut events: EventStream,
    mut encoder: ResponseEncoder,
) -> Result<switchboard_api::responses::ResponseObject, Error> {
    while let Some(event) = events.next().await {
        encoder.push(&event?);
    }
    encoder.finish(unix_now());
    Ok(encoder.into_response())
}

/// What is saved once the response is final (nothing when the request said `store: false`).
struct Record {
    target: Option<(Store, String)>,
    /// What the stored response shows (`include`); the stored context always keeps
    /// everything, for `previous_response_id`.
    shown: Shown,
    input_items: Vec<StoredItem>,
    previous_context: Vec<Value>,
}

impl Record {
    fn new(
        store: &Store,
        caller: &Caller,
        decoded: &ResponsesRequest,
        previous_context: Vec<Value>,
    ) -> Self {
        Self {
            target: decoded.store.then(|| (store.clone(), caller.owner.clone())),
            shown: Shown::of(decoded),
            input_items: decoded.input_items.clone(),
            previous_context,
        }
    }

    /// Saves the response; a storage failure is logged, not sent: the client already has its
    /// answer and only a later `previous_response_id` or retrieval will miss it.
    async fn save(self, response: &switchboard_api::responses::ResponseObject) {
        let Some((store, owner)) = self.target else {
            return;
        };
        let input_items: Vec<Value> = self
            .input_items
            .iter()
            .map(StoredItem::to_document)
            .collect();
        let mut context = self.previous_context;
        context.extend(input_items.iter().cloned());
        context.extend(response.output.iter().map(StoredItem::to_document));
        let stored = StoredResponse {
            id: response.id.clone(),
            owner,
            created_at: response.created_at,
            response: serde_json::to_value(response.shown(self.shown)).unwrap_or(Value::Null),
            input_items,
            context,
        };
        if let Err(err) = store.put_response(&stored).await {
            tracing::error!(%err, id = %stored.id, "could not store the response");
        }
    }
}

/// The Responses stream: semantic events, framed with their `event:` names; the record is
/// saved before the final event goes out.
struct ResponseFrames {
    encoder: ResponseEncoder,
    record: Option<Record>,
}

impl FrameEncoder for ResponseFrames {
    fn push(&mut self, event: &Event) -> Vec<String> {
        self.encoder.push(event).iter().map(frame).collect()
    }

    fn end(&mut self, outcome: Result<(), Error>) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async move {
            let last = match outcome {
                Ok(()) => self.encoder.finish(unix_now()),
                Err(_) => self.encoder.fail(
                    "The server had an error while processing your request.",
                    unix_now(),
                ),
            };
            if let Some(record) = self.record.take() {
                record.save(self.encoder.response()).await;
            }
            last.iter().map(frame).collect()
        })
    }
}

fn frame(event: &switchboard_api::responses::ResponseStreamEvent) -> String {
    sse::event_frame(event.kind(), event)
}

async fn load_previous(store: &Store, id: &str, caller: &Caller) -> Result<Vec<Value>, Error> {
    match store
        .get_response(id, &caller.owner)
        .await
        .map_err(store_error)?
    {
        Some(stored) => Ok(stored.context),
        None => Err(Error::invalid(
            "previous_response_id",
            format!("Previous response with id '{id}' not found."),
        )
        .with_code("previous_response_not_found")),
    }
}

async fn find(store: &Store, id: &str, caller: &Caller) -> Result<StoredResponse, Error> {
    store
        .get_response(id, &caller.owner)
        .await
        .map_err(store_error)?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("No response with id '{id}' found."),
    )
}

fn store_error(err: StoreError) -> Error {
    Error::internal(format!("response store: {err}"))
}

fn query_params(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, Error> {
    query
        .map(|Query(params)| params)
        .map_err(|rejection| Error::invalid("query", format!("Invalid query string: {rejection}")))
}
