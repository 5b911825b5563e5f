//! Any bytes as a Lambda@Edge event and as a function's result: decoding an event never panics and an
//! event that decodes encodes back to one that decodes; applying a result to a call of each trigger
//! never panics, and a result that applies prints back as a result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verge_config::model::EventType;
use verge_hooks::{event, Call};

const EVENT: &str = r#"{"Records":[{"cf":{"config":{"distributionDomainName":"d.verge.test","distributionId":"E1","eventType":"viewer-request","requestId":"r1"},"request":{"clientIp":"127.0.0.1","method":"GET","uri":"/a","querystring":"x=1","headers":{"host":[{"key":"Host","value":"d.verge.test"}],"cookie":[{"key":"Cookie","value":"a=1"}]}},"response":{"status":"200","statusDescription":"OK","headers":{"content-type":[{"key":"Content-Type","value":"text/plain"}]}}}}]}"#;

fn sample(trigger: EventType) -> Box<Call> {
    let (config, request, response) = event::decode(EVENT.as_bytes()).expect("the sample event decodes");
    let response =
        matches!(trigger, EventType::OriginResponse | EventType::ViewerResponse).then_some(response).flatten();
    event::call_from_event(trigger, &config, &request, response.as_ref())
}

fuzz_target!(|data: &[u8]| {
    if let Ok((config, request, response)) = event::decode(data) {
        let again = event::encode(&config, &request, response.as_ref());
        assert!(event::decode(&again).is_ok(), "an event that decodes encodes back to one that decodes");
    }
    for trigger in
        [EventType::ViewerRequest, EventType::OriginRequest, EventType::OriginResponse, EventType::ViewerResponse]
    {
        let mut call = sample(trigger);
        call.track_headers = true;
        if event::apply_output(&mut call, data).is_ok() {
            let (_, json) = event::result_json(&call);
            serde_json::to_vec(&json).expect("a result prints");
        }
    }
});
