//! Fair scheduling with the real model: a short request that arrives while a long prompt is
//! being prefilled gets its first token long before the long prompt is done, and a stream
//! that is decoding keeps producing tokens while the long prompt prefills.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use switchboard_engine::{Engine, EngineConfig};
use switchboard_model::{Event, Item, Request, Role};

fn request(text: &str, max_tokens: u32) -> Request {
    let mut request = Request::text("m", vec![Item::text(Role::User, text)]);
    request.sampling.max_output_tokens = Some(max_tokens);
    request.sampling.temperature = 0.0;
    request
}

/// When the first text arrives.
async fn first_text(generation: &mut switchboard_engine::Generation) -> Instant {
    loop {
        match generation.next().await {
            Some(Event::TextDelta { .. }) => return Instant::now(),
            Some(_) => {}
            None => panic!("the generation ended without text"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_prompt_never_stalls_the_others() {
    let path = switchboard_testkit::default_model_path();
    if !path.exists() {
        switchboard_testkit::skip_unless_ci(&format!("{} is absent", path.display()));
        return;
    }
    let engine = Engine::load(&path, "m", &EngineConfig::default()).unwrap();

    // A stream that is decoding when the long prompt arrives.
    let mut runner = engine
        .submit(&request("Write a long story about a lighthouse.", 400))
        .unwrap();
    first_text(&mut runner).await;

    let filler = "The harbour town woke slowly while gulls argued over scraps. ".repeat(110);
    let long_prompt = request(&format!("{filler}\nSummarise the text above."), 1);
    assert!(engine.prompt_tokens(&long_prompt).unwrap().len() > 1200);
    let long_submitted = Instant::now();
    let mut long = engine.submit(&long_prompt).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut short = engine.submit(&request("Say hi.", 4)).unwrap();

    // The runner keeps going meanwhile: count its tokens until the long prompt's first token.
    let counting = tokio::spawn(async move {
        let mut arrivals = Vec::new();
        while let Some(event) = runner.next().await {
            if matches!(event, Event::TextDelta { .. }) {
                arrivals.push(Instant::now());
            }
        }
        arrivals
    });
    let short_first = first_text(&mut short).await;
    let long_first = first_text(&mut long).await;
    let prefill = long_first - long_submitted;
    assert!(
        short_first < long_first,
        "the short request waited for the whole long prompt"
    );
    assert!(
        short_first - long_submitted < prefill / 2,
        "short request's first token after {:?}, long prompt's after {prefill:?}",
        short_first - long_submitted
    );
    // Decode-only steps get at least half the time while the long prompt prefills: at well
    // over 20 tokens/s idle here, that is far more than 5 tokens per second of prefill.
    let arrivals = counting.await.unwrap();
    let during = arrivals
        .iter()
        .filter(|t| **t > long_submitted && **t < long_first)
        .count();
    let floor = (prefill.as_secs_f64() * 5.0) as usize;
    assert!(
        during >= floor,
        "the running stream made {during} tokens in the {prefill:?} of prefill"
    );
}
