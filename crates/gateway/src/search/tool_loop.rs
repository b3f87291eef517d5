//! Search chosen by the model: a model that can call tools is given a `web_search` function;
//! when it calls it, the gateway runs the search, answers the call with the numbered results
//! and asks the model again, on the same provider, until it answers (at most
//! [`MAX_SEARCHES`] searches, the last turn without the tool so it must answer). The client
//! sees one answer: the text of every turn, each search as an `Event::WebSearch`, citations of
//! all the sources (numbered on across searches), the client's own tool calls as they were,
//! and the usage of all turns together.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use switchboard_model::{
    self as model, Event, FinishReason, FunctionTool, Item, Request, Sealed, Tool, ToolChoice,
    Usage,
};
use switchboard_providers::{EventStream, Provider};
use tokio::sync::mpsc;

use super::{numbered_sources, Citations, Source, WebSearch};

/// The function the model calls to search.
pub const SEARCH_TOOL: &str = "web_search";
/// Searches one request may run.
pub const MAX_SEARCHES: usize = 3;

impl WebSearch {
    /// Whether `request` can have its searches chosen by the model: a model that calls tools
    /// (`calls_tools`, on providers that let it choose), one answer, free to call tools or not
    /// (`none` with no tools of the client's counts as free), no tool of the client's already
    /// named `web_search`, plain text out.
    #[must_use]
    pub fn model_may_search(
        request: &Request,
        calls_tools: bool,
        providers: &[&dyn Provider],
    ) -> bool {
        let free = match request.tool_choice {
            ToolChoice::Auto => true,
            ToolChoice::None => request.tools.is_empty(),
            ToolChoice::Required | ToolChoice::Function(_) => false,
        };
        calls_tools
            && providers.iter().all(|p| p.chooses_its_own_searches())
            && request.sampling.n <= 1
            && free
            && matches!(request.output_format, model::OutputFormat::Text)
            && !request
                .tools
                .iter()
                .any(|Tool::Function(f)| f.name == SEARCH_TOOL)
    }

    /// The request as the model first sees it: with the `web_search` function, and no
    /// search asked of the provider itself.
    #[must_use]
    pub fn with_search_tool(request: &Request) -> Request {
        let mut request = request.clone();
        request.web_search = None;
        request.tools.push(search_tool());
        request.tool_choice = ToolChoice::Auto;
        request
    }

    /// Runs the conversation: `first` is the model's first turn (on `provider`, which knows
    /// the model as `upstream_model`), `request` what it was asked with.
    #[must_use]
    pub fn search_loop(
        &self,
        first: EventStream,
        provider: Arc<dyn Provider>,
        upstream_model: String,
        request: Request,
        options: Option<model::WebSearch>,
    ) -> EventStream {
        let served = first.served().cloned();
        let (sender, mut receiver) = mpsc::channel(64);
        let search = self.clone();
        let driver = Driver {
            search,
            provider,
            request,
            options,
            sender,
            citations: Citations::new(Vec::new().into()),
            usage: Usage::default(),
            searches: 0,
            text_ends_blank: None,
        };
        tokio::spawn(driver.run(first, upstream_model));
        EventStream::new(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
            .served_by(served)
    }
}

fn search_tool() -> Tool {
    Tool::Function(FunctionTool {
        name: SEARCH_TOOL.into(),
        description: Some(
            "Search the web. Returns numbered results (title, URL, text). Cite the results you \
             use by their number in square brackets right after the sentence they support, \
             like [1]."
                .into(),
        ),
        parameters: Some(json!({
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What to search for."}},
            "required": ["query"],
            "additionalProperties": false
        })),
        strict: true,
    })
}

/// One model turn, as far as the loop needs it.
#[derive(Default)]
struct Turn {
    text: String,
    reasoning: Vec<Item>,
    reasoning_text: String,
    /// The model's `web_search` calls: id, arguments, signature.
    searches: Vec<(String, String, Option<Sealed>)>,
    /// The turn's call indexes: a search's position in `searches`, or the client call's
    /// index as the client sees it.
    calls: HashMap<u32, CallSlot>,
    client_calls: u32,
    finished: Option<Event>,
}

#[derive(Clone, Copy)]
enum CallSlot {
    Search(usize),
    Client(u32),
}

struct Driver {
    search: WebSearch,
    provider: Arc<dyn Provider>,
    request: Request,
    options: Option<model::WebSearch>,
    sender: mpsc::Sender<Result<Event, model::Error>>,
    citations: Citations,
    usage: Usage,
    searches: u32,
    /// How the answer's text so far ends: `None` before any text, else whether with a space.
    text_ends_blank: Option<bool>,
}

impl Driver {
    async fn run(mut self, first: EventStream, upstream_model: String) {
        let mut events = first;
        let mut client_index_base = 0;
        loop {
            let Some(turn) = self.relay(&mut events, client_index_base).await else {
                return;
            };
            client_index_base += turn.client_calls;
            let last_allowed = self.searches as usize >= MAX_SEARCHES;
            if turn.searches.is_empty() || turn.client_calls > 0 || last_allowed {
                self.finish(turn).await;
                return;
            }
            if !self.answer_searches(turn).await {
                return;
            }
            let mut next = self.request.clone();
            next.model.clone_from(&upstream_model);
            if self.searches as usize >= MAX_SEARCHES {
                // No more searches: the model must answer with what it has.
                next.tools.retain(|Tool::Function(f)| f.name != SEARCH_TOOL);
                if next.tools.is_empty() {
                    next.tool_choice = ToolChoice::None;
                }
            }
            events = match self.provider.generate(Arc::new(next)).await {
                Ok(events) => events,
                Err(error) => {
                    let _ = self.sender.send(Err(error)).await;
                    return;
                }
            };
        }
    }

    /// Passes one turn's events on, keeping back what belongs to the loop (the search calls,
    /// the finish, the usage, the end); `None` when the stream failed or the client left.
    async fn relay(&mut self, events: &mut EventStream, client_base: u32) -> Option<Turn> {
        let mut turn = Turn::default();
        while let Some(item) = events.next().await {
            let event = match item {
                Ok(event) => event,
                Err(error) => {
                    let _ = self.sender.send(Err(error)).await;
                    return None;
                }
            };
            let mut out = Vec::new();
            match event {
                Event::TextDelta {
                    choice: 0,
                    ref text,
                    ..
                } => {
                    if turn.text.is_empty() && self.text_ends_blank == Some(false) {
                        // A later turn's text starts a paragraph of its own.
                        let gap = "\n\n";
                        let _ = self.citations.push(gap);
                        out.push(Event::TextDelta {
                            choice: 0,
                            text: gap.into(),
                            logprobs: Vec::new(),
                        });
                    }
                    if let Some(last) = text.chars().last() {
                        self.text_ends_blank = Some(last.is_whitespace());
                    }
                    turn.text.push_str(text);
                    let found = self.citations.push(text);
                    out.push(event);
                    out.extend(found.into_iter().map(|annotation| Event::Annotation {
                        choice: 0,
                        annotation,
                    }));
                }
                Event::ReasoningDelta {
                    choice: 0,
                    ref text,
                } => {
                    turn.reasoning_text.push_str(text);
                    out.push(event);
                }
                Event::ReasoningEnd {
                    choice: 0,
                    ref signature,
                    ref encrypted,
                } => {
                    turn.reasoning.push(Item::Reasoning {
                        id: None,
                        text: std::mem::take(&mut turn.reasoning_text),
                        summary: Vec::new(),
                        signature: signature.clone(),
                        encrypted: encrypted.clone(),
                    });
                    out.push(event);
                }
                Event::ToolCallStart {
                    choice: 0,
                    index,
                    id,
                    name,
                } => {
                    if name == SEARCH_TOOL {
                        turn.calls
                            .insert(index, CallSlot::Search(turn.searches.len()));
                        turn.searches.push((id, String::new(), None));
                    } else {
                        let client = client_base + turn.client_calls;
                        turn.client_calls += 1;
                        turn.calls.insert(index, CallSlot::Client(client));
                        out.push(Event::ToolCallStart {
                            choice: 0,
                            index: client,
                            id,
                            name,
                        });
                    }
                }
                Event::ToolCallArguments {
                    choice: 0,
                    index,
                    fragment,
                } => match turn.calls.get(&index) {
                    Some(CallSlot::Search(at)) => turn.searches[*at].1.push_str(&fragment),
                    Some(CallSlot::Client(client)) => out.push(Event::ToolCallArguments {
                        choice: 0,
                        index: *client,
                        fragment,
                    }),
                    None => {}
                },
                Event::ToolCallSignature {
                    choice: 0,
                    index,
                    signature,
                } => match turn.calls.get(&index) {
                    Some(CallSlot::Search(at)) => turn.searches[*at].2 = Some(signature),
                    Some(CallSlot::Client(client)) => out.push(Event::ToolCallSignature {
                        choice: 0,
                        index: *client,
                        signature,
                    }),
                    None => {}
                },
                Event::Finished { choice: 0, .. } => turn.finished = Some(event),
                Event::Usage(usage) => add_usage(&mut self.usage, &usage),
                Event::Done => break,
                other => out.push(other),
            }
            for event in out {
                if self.sender.send(Ok(event)).await.is_err() {
                    return None;
                }
            }
        }
        Some(turn)
    }

    /// Runs the turn's searches and adds the turn and their results to the conversation;
    /// `false` when the client left or a search failed (the client was told).
    async fn answer_searches(&mut self, turn: Turn) -> bool {
        let mut items = turn.reasoning;
        if !turn.text.is_empty() {
            items.push(Item::text(model::Role::Assistant, turn.text));
        }
        let mut outputs = Vec::new();
        for (call_id, arguments, signature) in turn.searches {
            let query = serde_json::from_str::<Value>(&arguments)
                .ok()
                .and_then(|args| args.get("query").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            let output = if query.trim().is_empty() || self.searches as usize >= MAX_SEARCHES {
                "No search was run: give a non-empty `query`, or answer with what you have."
                    .to_owned()
            } else {
                self.searches += 1;
                match self.search.find(query.trim(), self.options.as_ref()).await {
                    Ok(found) => self.announce(&query, found).await,
                    Err(error) => {
                        let _ = self.sender.send(Err(error)).await;
                        return false;
                    }
                }
            };
            items.push(Item::FunctionCall {
                call_id: call_id.clone(),
                name: SEARCH_TOOL.into(),
                arguments,
                signature,
            });
            outputs.push(Item::FunctionOutput {
                call_id,
                output,
                is_error: false,
            });
        }
        self.request.items.extend(items);
        self.request.items.extend(outputs);
        !self.sender.is_closed()
    }

    /// Shows the search to the client and returns what the model is told: the results
    /// numbered on from the earlier searches'.
    async fn announce(&mut self, query: &str, found: Vec<Source>) -> String {
        let call = super::search_call(query.to_owned(), &found);
        let _ = self.sender.send(Ok(Event::WebSearch(call))).await;
        let first = self.citations.add_sources(&found);
        if found.is_empty() {
            return "The search found nothing.".into();
        }
        let budget = super::context_budget(self.options.as_ref());
        numbered_sources(&found, first, budget)
            .trim_start()
            .to_owned()
    }

    /// The answer is complete: the last citations, the finish, the usage of every turn with
    /// the searches, the end.
    async fn finish(mut self, turn: Turn) {
        let mut out: Vec<Event> = self
            .citations
            .finish()
            .into_iter()
            .map(|annotation| Event::Annotation {
                choice: 0,
                annotation,
            })
            .collect();
        let finished = match turn.finished {
            // Search calls the loop did not run are not the client's to answer.
            Some(Event::Finished {
                reason: FinishReason::ToolCalls,
                ..
            }) if turn.client_calls == 0 => Event::Finished {
                choice: 0,
                reason: FinishReason::Stop,
                stop_sequence: None,
            },
            Some(finished) => finished,
            None => {
                let _ = self
                    .sender
                    .send(Err(model::Error::internal(
                        "the provider's answer ended without finishing",
                    )))
                    .await;
                return;
            }
        };
        out.push(finished);
        self.usage.web_search_requests += self.searches;
        out.push(Event::Usage(self.usage));
        out.push(Event::Done);
        for event in out {
            if self.sender.send(Ok(event)).await.is_err() {
                return;
            }
        }
    }
}

/// Usage of several turns of one answer: every turn's prompt and output count.
fn add_usage(total: &mut Usage, turn: &Usage) {
    total.prompt_tokens += turn.prompt_tokens;
    total.completion_tokens += turn.completion_tokens;
    total.cached_tokens += turn.cached_tokens;
    total.cache_write_tokens += turn.cache_write_tokens;
    total.reasoning_tokens += turn.reasoning_tokens;
    total.web_search_requests += turn.web_search_requests;
}
