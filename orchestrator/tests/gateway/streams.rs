//! Streamed gateway answers relayed chunk by chunk, and what happens when the client hangs
//! up or the node's stream breaks before or during the reply.

use super::*;

#[tokio::test]
async fn chunks_reach_the_client_one_by_one_and_end_with_done() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/v1/chat/completions", user_chat(true), &[]);
    let task = take(&h, "pi-1").await;
    assert_eq!(task["data"]["stream"], true);
    let up = Upload::open(&h, &task, "pi-1");
    up.line(chat_chunk("The")).await;
    let resp = call.head().await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let mut body = resp.into_body();
    // The first chunk is at the client while the node has sent nothing more.
    let first = next_text(&mut body).await.unwrap();
    assert!(first.contains("\"content\":\"The\""), "{first}");
    assert!(h.fleet.streams().streaming_on("pi-1").len() == 1);
    up.line(chat_chunk(" sky")).await;
    let second = next_text(&mut body).await.unwrap();
    assert!(second.contains("\"content\":\" sky\""), "{second}");
    up.line(chat_done()).await;
    let rest = rest_text(&mut body).await;
    assert!(rest.contains("\"finish_reason\":\"stop\""), "{rest}");
    assert!(rest.contains("\"total_tokens\":7"), "{rest}");
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    let (s, v) = up.finish().await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = task["task_id"].as_str().unwrap();
    let (s, _) = h.result(id, "pi-1", chat_result("The sky")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.status(id).await["status"], "completed");
    let resp = h
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "pifleet_gateway_requests_total{api=\"openai\",endpoint=\"chat\",outcome=\"ok\"} 1",
        "pifleet_gateway_time_to_first_token_seconds_count{model=\"llama3.2:1b\"} 1",
        "pifleet_gateway_tokens_per_second_count{model=\"llama3.2:1b\"} 1",
        "pifleet_gateway_relayed_chunks_total 3",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
}

#[tokio::test]
async fn ollama_generate_streams_ndjson_byte_for_byte() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(
        &h,
        "/api/generate",
        json!({"model": MODEL, "prompt": "Hi"}),
        &[],
    );
    let task = take(&h, "pi-1").await;
    assert_eq!(task["data"]["endpoint"], "generate");
    assert_eq!(
        task["data"]["request"]["stream"], true,
        "Ollama streams by default"
    );
    let up = Upload::open(&h, &task, "pi-1");
    let line = json!({"model": MODEL, "created_at": "t", "response": "Hello", "done": false});
    up.line(line.clone()).await;
    let resp = call.head().await;
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut body = resp.into_body();
    assert_eq!(next_text(&mut body).await.unwrap(), format!("{line}\n"));
    let done = json!({"model": MODEL, "created_at": "t", "response": "", "done": true,
                      "done_reason": "stop", "eval_count": 1, "eval_duration": 1000});
    up.line(done.clone()).await;
    assert_eq!(rest_text(&mut body).await, format!("{done}\n"));
    up.finish().await;
}

#[tokio::test]
async fn a_client_that_hangs_up_cancels_the_task_and_frees_the_node() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/api/chat", user_chat(true), &[]);
    let task = take(&h, "pi-1").await;
    let id = task["task_id"].as_str().unwrap().to_string();
    let up = Upload::open(&h, &task, "pi-1");
    up.line(chat_chunk("The")).await;
    let resp = call.head().await;
    let mut body = resp.into_body();
    next_text(&mut body).await.unwrap();
    drop(body);
    // The agent's upload is refused at once, before its body ends.
    let (s, v) = tokio::time::timeout(Duration::from_secs(5), up.response)
        .await
        .expect("409 before the body ends")
        .unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let st = h.status(&id).await;
    assert_eq!(st["status"], "cancelled", "{st}");
    // Its late result is refused, and the node takes the next task.
    let (s, _) = h.result(&id, "pi-1", chat_result("The")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let next = h.submit(json!({"type": "ollama_api", "data": {"model": MODEL, "endpoint": "generate", "request": {"model": MODEL}}})).await;
    assert_eq!(take(&h, "pi-1").await["task_id"], next.as_str());
}

#[tokio::test]
async fn a_stream_that_breaks_before_its_first_chunk_runs_on_another_node() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/v1/chat/completions", user_chat(true), &[]);
    let task = take(&h, "pi-1").await;
    Upload::open(&h, &task, "pi-1").die().await;
    serving_node(&h, "pi-2").await;
    let again = take(&h, "pi-2").await;
    assert_eq!(again["task_id"], task["task_id"]);
    assert_eq!(again["attempt"], 2);
    let up = Upload::open(&h, &again, "pi-2");
    up.line(chat_chunk("Blue")).await;
    up.line(chat_done()).await;
    let all = rest_text(&mut call.head().await.into_body()).await;
    assert!(
        all.contains("\"content\":\"Blue\"") && all.ends_with("data: [DONE]\n\n"),
        "{all}"
    );
    up.finish().await;
}

#[tokio::test]
async fn a_chat_that_breaks_mid_stream_is_continued_from_the_partial_reply() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/api/chat", user_chat(true), &[]);
    let task = take(&h, "pi-1").await;
    let (first, other) = ("pi-1", "pi-2");
    let up = Upload::open(&h, &task, first);
    up.line(chat_chunk("Rayleigh")).await;
    let mut body = call.head().await.into_body();
    assert!(next_text(&mut body).await.unwrap().contains("Rayleigh"));
    // The client keeps reading, as clients do; that is what drives the relay.
    let reader = tokio::spawn(async move { rest_text(&mut body).await });
    up.die().await;
    serving_node(&h, other).await;
    let cont = take(&h, other).await;
    assert_ne!(
        cont["task_id"], task["task_id"],
        "a new task continues the answer"
    );
    let msgs = cont["data"]["request"]["messages"].as_array().unwrap();
    assert_eq!(
        msgs.last().unwrap(),
        &json!({"role": "assistant", "content": "Rayleigh"})
    );
    let up2 = Upload::open(&h, &cont, other);
    up2.line(chat_chunk(" scattering")).await;
    up2.line(chat_done()).await;
    let rest = reader.await.unwrap();
    assert!(
        rest.contains(" scattering") && rest.contains("\"done\":true"),
        "{rest}"
    );
    up2.finish().await;
    let old = h.status(task["task_id"].as_str().unwrap()).await;
    assert_eq!(old["status"], "cancelled");
    assert!(
        old["error"].as_str().unwrap().contains("continued as task"),
        "{old}"
    );
}

#[tokio::test]
async fn a_generate_that_breaks_mid_stream_ends_with_an_explicit_error() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(
        &h,
        "/v1/completions",
        json!({"model": MODEL, "prompt": "Hi", "stream": true}),
        &[],
    );
    let task = take(&h, "pi-1").await;
    let up = Upload::open(&h, &task, "pi-1");
    up.line(json!({"model": MODEL, "response": "Hel", "done": false}))
        .await;
    let mut body = call.head().await.into_body();
    assert!(next_text(&mut body).await.unwrap().contains("Hel"));
    up.die().await;
    let rest = rest_text(&mut body).await;
    assert!(
        rest.contains("\"error\"") && rest.contains("incomplete"),
        "{rest}"
    );
    assert!(rest.ends_with("data: [DONE]\n\n"));
    assert!(
        !rest.contains("finish_reason\":\"stop"),
        "never looks complete: {rest}"
    );
}
