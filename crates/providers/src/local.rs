//! The embedded engine as a provider. Rendering, tokenizing and grammar compilation are CPU
//! work, so submission runs on tokio's blocking pool; the events then arrive over the engine's
//! bounded channel.

use std::sync::Arc;

use futures::future::BoxFuture;
pub use switchboard_engine::{Engine, ModelInfo};
use switchboard_model::{Error, Event, Request};

use crate::{EventStream, Provider};

pub struct LocalProvider {
    engine: Engine,
}

impl LocalProvider {
    #[must_use]
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    #[must_use]
    pub fn info(&self) -> &ModelInfo {
        self.engine.info()
    }
}

impl Provider for LocalProvider {
    fn load(&self) -> Option<crate::Load> {
        Some(crate::Load {
            queued: self.engine.queued_requests(),
            running: self.engine.running_requests(),
        })
    }

    fn count_tokens(&self, request: Arc<Request>) -> BoxFuture<'_, Result<Option<u32>, Error>> {
        let engine = self.engine.clone();
        Box::pin(async move {
            let tokens = tokio::task::spawn_blocking(move || engine.prompt_tokens(&request))
                .await
                .map_err(|err| Error::internal(format!("the counting task failed: {err}")))??;
            Ok(Some(u32::try_from(tokens.len()).unwrap_or(u32::MAX)))
        })
    }

    fn chooses_its_own_searches(&self) -> bool {
        false
    }

    fn generate(&self, request: Arc<Request>) -> BoxFuture<'_, Result<EventStream, Error>> {
        let engine = self.engine.clone();
        Box::pin(async move {
            let generation = tokio::task::spawn_blocking(move || engine.submit(&request))
                .await
                .map_err(|err| Error::internal(format!("the submission task failed: {err}")))??;
            // The engine sends usage last, once every choice has finished; its channel closing
            // before that means the generation broke off (a constrained decode that reached a
            // dead end), which the stream reports as a failure.
            let events =
                futures::stream::unfold((generation, false), |(mut generation, done)| async move {
                    if done {
                        return None;
                    }
                    match generation.next().await {
                        Some(event) => Some((Ok(event), (generation, false))),
                        None if generation.completed() => {
                            Some((Ok(Event::Done), (generation, true)))
                        }
                        None => Some((
                            Err(Error::internal(
                                "the generation broke off before it completed",
                            )),
                            (generation, true),
                        )),
                    }
                });
            Ok(EventStream::new(events))
        })
    }
}
