//! Property tests of the OCPP-J envelope: nothing panics on any input, what is sent reads back
//! the same, and every answer to a broken frame is a well-formed CALLERROR.

use chargebridge::ocpp::rpc::{ErrorCode, Frame, MAX_MESSAGE_ID_LEN};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Decimals as OCPP uses them (limits with one decimal); exact through text and back.
        (-100_000i32..100_000).prop_map(|n| Value::from(f64::from(n) / 10.0)),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-zA-Z]{1,8}", json_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn message_id() -> impl Strategy<Value = String> {
    ".{1,36}".prop_filter("not empty", |s: &String| !s.is_empty())
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (message_id(), "[A-Za-z]{1,30}", object()).prop_map(|(id, action, payload)| {
            Frame::Call {
                id,
                action,
                payload,
            }
        }),
        (message_id(), object()).prop_map(|(id, payload)| Frame::CallResult { id, payload }),
        (message_id(), error_code(), ".{0,40}", object()).prop_map(
            |(id, code, description, details)| Frame::CallError {
                id,
                code,
                description,
                details,
            }
        ),
    ]
}

/// Checks that an answer is a CALLERROR as OCPP-J §4.2.3 wants it.
fn assert_well_formed_callerror(text: &str) {
    let v: Value = serde_json::from_str(text).expect("answer is JSON");
    let a = v.as_array().expect("answer is an array");
    assert_eq!(a.len(), 5);
    assert_eq!(a[0], json!(4));
    assert!(a[1].is_string());
    assert!(ErrorCode::from_wire(a[2].as_str().expect("code is a string")).is_some());
    assert!(a[3].is_string());
    assert!(a[4].is_object());
}

proptest! {
    #[test]
    fn any_text_parses_or_fails_without_panicking(text in ".{0,200}") {
        if let Err(e) = Frame::parse(&text)
            && let Some(reply) = e.reply()
        {
            assert_well_formed_callerror(&reply.to_json());
        }
    }

    #[test]
    fn any_json_array_parses_or_gets_a_well_formed_answer(items in prop::collection::vec(json_value(), 0..6), type_id in 0u64..8) {
        let mut items = items;
        items.insert(0, Value::from(type_id));
        let text = Value::Array(items).to_string();
        match Frame::parse(&text) {
            Ok(frame) => {
                let expected = matches!(
                    (type_id, &frame),
                    (2, Frame::Call { .. }) | (3, Frame::CallResult { .. }) | (4, Frame::CallError { .. })
                );
                prop_assert!(expected, "type {} read as {:?}", type_id, frame);
            }
            Err(e) => {
                if let Some(reply) = e.reply() {
                    // Only frames that may be CALLs are answered.
                    prop_assert!(type_id != 3 && type_id != 4);
                    assert_well_formed_callerror(&reply.to_json());
                }
            }
        }
    }

    #[test]
    fn every_frame_reads_back_as_sent(frame in frame()) {
        let text = frame.to_json();
        prop_assert_eq!(Frame::parse(&text).expect("own frame parses"), frame);
    }

    #[test]
    fn ids_up_to_36_characters_are_accepted_and_longer_ones_answered(len in 1usize..60) {
        let id = "é".repeat(len);
        let text = format!(r#"[2,"{id}","Heartbeat",{{}}]"#);
        let parsed = Frame::parse(&text);
        if len <= MAX_MESSAGE_ID_LEN {
            prop_assert!(parsed.is_ok());
        } else {
            let e = parsed.expect_err("too long");
            prop_assert_eq!(e.code, ErrorCode::FormationViolation);
            prop_assert_eq!(e.reply_id, Some(id));
        }
    }
}
