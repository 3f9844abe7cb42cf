use super::reply::floats_base64;
use super::*;

#[test]
fn chat_options_are_mapped() {
    let body = json!({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "stop": "x", "seed": 3
    });
    let r = chat_request(&body, "m", true).unwrap();
    assert_eq!(r["options"]["num_predict"], 7);
    assert_eq!(r["options"]["temperature"], 0.5);
    assert_eq!(r["options"]["top_p"], 0.9);
    assert_eq!(r["options"]["stop"], json!(["x"]));
    assert_eq!(r["options"]["seed"], 3);
    assert_eq!(r["stream"], true);
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 7, "max_completion_tokens": 9});
    assert_eq!(
        chat_request(&body, "m", false).unwrap()["options"]["num_predict"],
        9
    );
}

#[test]
fn bad_chat_bodies_name_the_field() {
    let e = chat_request(&json!({"model": "m"}), "m", false).unwrap_err();
    assert!(e.message.starts_with("messages: missing"));
    let e = chat_request(
        &json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
        "m",
        false,
    )
    .unwrap_err();
    assert!(e.message.starts_with("temperature:"), "{}", e.message);
    assert!(model_of(&json!({"messages": []}), Api::OpenAi).is_err());
}

#[test]
fn stream_ends_with_usage_and_done() {
    let mut s = SseShaper::new(Meta::new("chatcmpl", "a-b", 1.0, "m"), true, true);
    let first = String::from_utf8(
        s.chunk(&json!({"message": {"role": "assistant", "content": "Hi"}, "done": false}))
            .unwrap(),
    )
    .unwrap();
    assert!(first.starts_with("data: {") && first.contains("\"role\":\"assistant\""));
    let end = String::from_utf8(s.done(&json!({
        "message": {"content": ""}, "done": true, "done_reason": "stop",
        "prompt_eval_count": 3, "eval_count": 5
    })))
    .unwrap();
    assert!(end.contains("\"finish_reason\":\"stop\""));
    assert!(end.contains("\"total_tokens\":8"));
    assert!(end.ends_with("data: [DONE]\n\n"));
}

#[test]
fn base64_matches_known_bytes() {
    // 1.0f32 = 00 00 80 3f.
    assert_eq!(floats_base64(&json!([1.0])), "AACAPw==");
}
