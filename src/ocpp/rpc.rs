//! The OCPP-J RPC envelope (OCPP-J 1.6 §4): CALL, CALLRESULT and CALLERROR frames.
//!
//! Pure: text in, [`Frame`] out and back. The session owns the socket; this module only knows
//! the envelope, never the payloads. Malformed input becomes an [`RpcError`] that says which
//! CALLERROR answers it, and with which message id, so the session never has to guess.
//!
//! Lenient in, strict out: inbound error codes in the OCPP 2.x spelling are accepted, an
//! unknown inbound code reads as `GenericError`, a CALLERROR without description or details is
//! accepted; outbound frames always carry the 1.6 wire strings and `{}` for empty details.

use std::fmt;

use serde_json::{Map, Value};

/// Message type number of a CALL (OCPP-J §4.1.3).
pub const MESSAGE_TYPE_CALL: u64 = 2;
/// Message type number of a CALLRESULT.
pub const MESSAGE_TYPE_CALLRESULT: u64 = 3;
/// Message type number of a CALLERROR.
pub const MESSAGE_TYPE_CALLERROR: u64 = 4;

/// The longest message id OCPP-J allows (§4.1.4: "maximum of 36 characters").
pub const MAX_MESSAGE_ID_LEN: usize = 36;

/// The error codes of OCPP-J 1.6 §4.2.3, spelled as on the wire.
///
/// "FormationViolation" and "OccurenceConstraintViolation" are the 1.6 spellings and stay
/// (J-errata 5.1, 5.2); the 2.x spellings are accepted inbound only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The requested action is not known by the receiver.
    NotImplemented,
    /// The requested action is recognised but not supported by the receiver.
    NotSupported,
    /// An internal error occurred and the receiver could not process the action.
    InternalError,
    /// The payload for the action is incomplete.
    ProtocolError,
    /// A security issue occurred during processing.
    SecurityError,
    /// The payload is syntactically incorrect or does not conform to the PDU structure.
    FormationViolation,
    /// A field of the payload has an invalid value.
    PropertyConstraintViolation,
    /// A field of the payload violates occurrence constraints.
    OccurenceConstraintViolation,
    /// A field of the payload violates data type constraints.
    TypeConstraintViolation,
    /// Any other error.
    GenericError,
}

impl ErrorCode {
    /// Every code, in the order of the OCPP-J table.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::NotImplemented,
        ErrorCode::NotSupported,
        ErrorCode::InternalError,
        ErrorCode::ProtocolError,
        ErrorCode::SecurityError,
        ErrorCode::FormationViolation,
        ErrorCode::PropertyConstraintViolation,
        ErrorCode::OccurenceConstraintViolation,
        ErrorCode::TypeConstraintViolation,
        ErrorCode::GenericError,
    ];

    /// The 1.6 wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotImplemented => "NotImplemented",
            ErrorCode::NotSupported => "NotSupported",
            ErrorCode::InternalError => "InternalError",
            ErrorCode::ProtocolError => "ProtocolError",
            ErrorCode::SecurityError => "SecurityError",
            ErrorCode::FormationViolation => "FormationViolation",
            ErrorCode::PropertyConstraintViolation => "PropertyConstraintViolation",
            ErrorCode::OccurenceConstraintViolation => "OccurenceConstraintViolation",
            ErrorCode::TypeConstraintViolation => "TypeConstraintViolation",
            ErrorCode::GenericError => "GenericError",
        }
    }

    /// Reads a wire string, accepting the OCPP 2.x spellings `FormatViolation` and
    /// `OccurrenceConstraintViolation` that some central systems send (mobilityhouse/ocpp,
    /// ocpp-rpc). Returns `None` for anything else.
    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        match s {
            "FormatViolation" => Some(ErrorCode::FormationViolation),
            "OccurrenceConstraintViolation" => Some(ErrorCode::OccurenceConstraintViolation),
            _ => ErrorCode::ALL.into_iter().find(|c| c.as_str() == s),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One OCPP-J message.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `[2, id, action, payload]`: a request.
    Call {
        /// Message id, unique per sender and connection.
        id: String,
        /// The OCPP action, e.g. `BootNotification`.
        action: String,
        /// The request payload (a JSON object).
        payload: Value,
    },
    /// `[3, id, payload]`: the answer to a CALL.
    CallResult {
        /// The id of the CALL answered.
        id: String,
        /// The response payload.
        payload: Value,
    },
    /// `[4, id, code, description, details]`: a CALL that could not be answered.
    CallError {
        /// The id of the CALL answered.
        id: String,
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable description, `""` if nothing better.
        description: String,
        /// Extra details; always an object on the wire (`{}` when empty).
        details: Value,
    },
}

/// A frame that could not be read, and how to answer it.
///
/// `reply_id` is set only when the frame was (or may have been) a CALL and its message id could
/// be read: a CALLERROR goes only in reply to a CALL (EVerest/libocpp PR #995), so a broken
/// CALLRESULT or CALLERROR is dropped, as is anything without a readable id.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct RpcError {
    /// The CALLERROR code that answers the frame.
    pub code: ErrorCode,
    /// The message id to answer with, when the frame may be answered at all.
    pub reply_id: Option<String>,
    /// What was wrong, fit for `errorDescription` and logs (never echoes the frame).
    pub description: String,
}

impl RpcError {
    fn new(code: ErrorCode, reply_id: Option<String>, description: impl Into<String>) -> Self {
        RpcError {
            code,
            reply_id,
            description: description.into(),
        }
    }

    /// The CALLERROR to send back, or `None` when the frame must be dropped silently.
    pub fn reply(&self) -> Option<Frame> {
        self.reply_id.as_ref().map(|id| Frame::CallError {
            id: id.clone(),
            code: self.code,
            description: self.description.clone(),
            details: Value::Object(Map::new()),
        })
    }
}

impl Frame {
    /// The message id of the frame.
    pub fn id(&self) -> &str {
        match self {
            Frame::Call { id, .. } | Frame::CallResult { id, .. } | Frame::CallError { id, .. } => {
                id
            }
        }
    }

    /// Reads one frame from the text of a WebSocket message.
    pub fn parse(text: &str) -> Result<Frame, RpcError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            RpcError::new(
                ErrorCode::FormationViolation,
                None,
                format!("not valid JSON (line {}, column {})", e.line(), e.column()),
            )
        })?;
        let Value::Array(items) = value else {
            return Err(RpcError::new(
                ErrorCode::ProtocolError,
                None,
                "an OCPP-J message must be a JSON array",
            ));
        };
        let Some(type_id) = items.first().and_then(Value::as_u64) else {
            return Err(RpcError::new(
                ErrorCode::ProtocolError,
                None,
                "the first element must be the message type number",
            ));
        };
        // Whether a CALLERROR may answer this frame: only a CALL, or a frame of an unknown type
        // (which may be a request of a newer protocol revision).
        let answerable = !matches!(type_id, MESSAGE_TYPE_CALLRESULT | MESSAGE_TYPE_CALLERROR);
        let id = read_id(items.get(1), answerable)?;
        let reply_id = answerable.then(|| id.clone());

        match type_id {
            MESSAGE_TYPE_CALL => {
                if items.len() != 4 {
                    return Err(RpcError::new(
                        ErrorCode::ProtocolError,
                        reply_id,
                        format!("a CALL has 4 elements, this one has {}", items.len()),
                    ));
                }
                let action = match &items[2] {
                    Value::String(a) if !a.is_empty() => a.clone(),
                    _ => {
                        return Err(RpcError::new(
                            ErrorCode::FormationViolation,
                            reply_id,
                            "the action must be a non-empty string",
                        ));
                    }
                };
                if !items[3].is_object() {
                    return Err(RpcError::new(
                        ErrorCode::FormationViolation,
                        reply_id,
                        "the payload of a CALL must be a JSON object",
                    ));
                }
                let payload = items.into_iter().nth(3).unwrap_or_default();
                Ok(Frame::Call {
                    id,
                    action,
                    payload,
                })
            }
            MESSAGE_TYPE_CALLRESULT => {
                if items.len() != 3 {
                    return Err(RpcError::new(
                        ErrorCode::ProtocolError,
                        None,
                        format!("a CALLRESULT has 3 elements, this one has {}", items.len()),
                    ));
                }
                // Lenient: any JSON value is passed on; the caller checks it against the schema.
                let payload = items.into_iter().nth(2).unwrap_or_default();
                Ok(Frame::CallResult { id, payload })
            }
            MESSAGE_TYPE_CALLERROR => {
                if !(3..=5).contains(&items.len()) {
                    return Err(RpcError::new(
                        ErrorCode::ProtocolError,
                        None,
                        format!("a CALLERROR has 5 elements, this one has {}", items.len()),
                    ));
                }
                let Some(code_str) = items[2].as_str() else {
                    return Err(RpcError::new(
                        ErrorCode::FormationViolation,
                        None,
                        "the error code must be a string",
                    ));
                };
                // Lenient: an unknown code (e.g. a 2.x `RpcFrameworkError`) still fails the CALL.
                let code = ErrorCode::from_wire(code_str).unwrap_or(ErrorCode::GenericError);
                let description = items
                    .get(3)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let details = match items.into_iter().nth(4) {
                    Some(v @ Value::Object(_)) => v,
                    _ => Value::Object(Map::new()),
                };
                Ok(Frame::CallError {
                    id,
                    code,
                    description,
                    details,
                })
            }
            other => Err(RpcError::new(
                ErrorCode::ProtocolError,
                reply_id,
                format!("unknown message type number {other}"),
            )),
        }
    }

    /// The frame as OCPP-J text. Empty or non-object CALLERROR details are sent as `{}`, a
    /// `null` payload as `{}`, as OCPP-J §4.2.3 requires.
    pub fn to_json(&self) -> String {
        let value = match self {
            Frame::Call {
                id,
                action,
                payload,
            } => Value::Array(vec![
                Value::from(MESSAGE_TYPE_CALL),
                Value::from(id.as_str()),
                Value::from(action.as_str()),
                object_or_empty(payload),
            ]),
            Frame::CallResult { id, payload } => Value::Array(vec![
                Value::from(MESSAGE_TYPE_CALLRESULT),
                Value::from(id.as_str()),
                object_or_empty(payload),
            ]),
            Frame::CallError {
                id,
                code,
                description,
                details,
            } => Value::Array(vec![
                Value::from(MESSAGE_TYPE_CALLERROR),
                Value::from(id.as_str()),
                Value::from(code.as_str()),
                Value::from(description.as_str()),
                match details {
                    Value::Object(_) => details.clone(),
                    _ => Value::Object(Map::new()),
                },
            ]),
        };
        value.to_string()
    }
}

/// Payloads other than objects are passed through (the caller chose them); only `null`
/// becomes `{}`, because OCPP-J has no empty payload other than `{}`.
fn object_or_empty(payload: &Value) -> Value {
    match payload {
        Value::Null => Value::Object(Map::new()),
        other => other.clone(),
    }
}

fn read_id(item: Option<&Value>, answerable: bool) -> Result<String, RpcError> {
    match item {
        Some(Value::String(id)) if id.is_empty() => Err(RpcError::new(
            ErrorCode::FormationViolation,
            None,
            "the message id must not be empty",
        )),
        Some(Value::String(id)) if id.chars().count() > MAX_MESSAGE_ID_LEN => {
            // Echo the id anyway: it is the only way the peer can match the error to its CALL.
            Err(RpcError::new(
                ErrorCode::FormationViolation,
                answerable.then(|| id.clone()),
                format!("the message id is longer than {MAX_MESSAGE_ID_LEN} characters"),
            ))
        }
        Some(Value::String(id)) => Ok(id.clone()),
        Some(_) => Err(RpcError::new(
            ErrorCode::FormationViolation,
            None,
            "the message id must be a string",
        )),
        None => Err(RpcError::new(
            ErrorCode::ProtocolError,
            None,
            "the message id is missing",
        )),
    }
}

/// Message ids for one connection: a random per-session prefix plus a counter, so ids never
/// repeat on a connection and do not collide with ids of an earlier session that a central
/// system may still remember (a new id for every send, libocpp PR #298).
#[derive(Debug)]
pub struct MessageIds {
    prefix: String,
    next: u64,
}

impl MessageIds {
    /// A generator with a fresh random prefix.
    pub fn new() -> Self {
        Self::with_prefix(&format!("{:08x}", rand::random::<u32>()))
    }

    /// A generator with a fixed prefix (for deterministic tests). The prefix is cut to 15
    /// characters so that every id stays within [`MAX_MESSAGE_ID_LEN`].
    pub fn with_prefix(prefix: &str) -> Self {
        MessageIds {
            prefix: prefix.chars().take(15).collect(),
            next: 1,
        }
    }

    /// The next id: `<prefix>-<n>`, at most 36 characters (15 + 1 + 20 digits).
    pub fn next_id(&mut self) -> String {
        let id = format!("{}-{}", self.prefix, self.next);
        self.next = self.next.wrapping_add(1);
        id
    }
}

impl Default for MessageIds {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(text: &str) -> RpcError {
        match Frame::parse(text) {
            Err(e) => e,
            Ok(f) => panic!("{text} parsed as {f:?}"),
        }
    }

    #[test]
    fn a_call_round_trips() {
        let text = r#"[2,"19223201","BootNotification",{"chargePointModel":"SingleSocketCharger","chargePointVendor":"VendorX"}]"#;
        let frame = Frame::parse(text).unwrap();
        assert_eq!(
            frame,
            Frame::Call {
                id: "19223201".into(),
                action: "BootNotification".into(),
                payload: json!({"chargePointVendor":"VendorX","chargePointModel":"SingleSocketCharger"}),
            }
        );
        assert_eq!(frame.to_json(), text);
    }

    #[test]
    fn a_callresult_round_trips() {
        let text = r#"[3,"19223201",{"currentTime":"2013-02-01T20:53:32.486Z","interval":300,"status":"Accepted"}]"#;
        let frame = Frame::parse(text).unwrap();
        assert_eq!(frame.id(), "19223201");
        assert_eq!(Frame::parse(&frame.to_json()).unwrap(), frame);
    }

    #[test]
    fn a_callerror_round_trips_with_empty_details_as_object() {
        let frame = Frame::CallError {
            id: "7".into(),
            code: ErrorCode::NotImplemented,
            description: String::new(),
            details: Value::Null,
        };
        assert_eq!(frame.to_json(), r#"[4,"7","NotImplemented","",{}]"#);
        let back = Frame::parse(&frame.to_json()).unwrap();
        assert_eq!(
            back,
            Frame::CallError {
                id: "7".into(),
                code: ErrorCode::NotImplemented,
                description: String::new(),
                details: json!({}),
            }
        );
    }

    #[test]
    fn every_error_code_uses_the_16_wire_string_and_reads_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::FormationViolation.as_str(), "FormationViolation");
        assert_eq!(
            ErrorCode::OccurenceConstraintViolation.as_str(),
            "OccurenceConstraintViolation"
        );
    }

    #[test]
    fn the_2x_spellings_are_accepted_inbound_and_sent_in_16_spelling() {
        let f = Frame::parse(r#"[4,"1","FormatViolation","bad",{}]"#).unwrap();
        let Frame::CallError { code, .. } = &f else {
            panic!("{f:?}")
        };
        assert_eq!(*code, ErrorCode::FormationViolation);
        assert!(f.to_json().contains("\"FormationViolation\""));
        let f = Frame::parse(r#"[4,"1","OccurrenceConstraintViolation","",{}]"#).unwrap();
        assert!(f.to_json().contains("\"OccurenceConstraintViolation\""));
    }

    #[test]
    fn an_unknown_error_code_reads_as_generic_error() {
        let f = Frame::parse(r#"[4,"1","RpcFrameworkError","x",{}]"#).unwrap();
        assert!(matches!(
            f,
            Frame::CallError {
                code: ErrorCode::GenericError,
                ..
            }
        ));
    }

    #[test]
    fn a_callerror_without_description_or_details_is_accepted() {
        let f = Frame::parse(r#"[4,"1","InternalError"]"#).unwrap();
        assert_eq!(
            f,
            Frame::CallError {
                id: "1".into(),
                code: ErrorCode::InternalError,
                description: String::new(),
                details: json!({}),
            }
        );
    }

    #[test]
    fn invalid_json_is_a_formation_violation_without_reply() {
        let e = err(r#"[2,"1","Heartbeat",{"#);
        assert_eq!(e.code, ErrorCode::FormationViolation);
        assert_eq!(e.reply(), None);
        assert_eq!(err("").code, ErrorCode::FormationViolation);
    }

    #[test]
    fn a_non_array_is_a_protocol_error_without_reply() {
        for text in [r#"{"a":1}"#, "42", r#""text""#, "null"] {
            let e = err(text);
            assert_eq!(e.code, ErrorCode::ProtocolError, "{text}");
            assert_eq!(e.reply(), None, "{text}");
        }
    }

    #[test]
    fn a_missing_or_bad_message_type_is_a_protocol_error_without_reply() {
        for text in [
            "[]",
            r#"["2","1","Heartbeat",{}]"#,
            r#"[-2,"1"]"#,
            r#"[2.5,"1"]"#,
        ] {
            let e = err(text);
            assert_eq!(e.code, ErrorCode::ProtocolError, "{text}");
            assert_eq!(e.reply(), None, "{text}");
        }
    }

    #[test]
    fn an_unknown_message_type_is_answered_with_protocol_error() {
        let e = err(r#"[5,"abc","Heartbeat",{}]"#);
        assert_eq!(e.code, ErrorCode::ProtocolError);
        assert_eq!(e.reply_id.as_deref(), Some("abc"));
        let reply = e.reply().unwrap().to_json();
        assert!(reply.starts_with(r#"[4,"abc","ProtocolError","#), "{reply}");
        assert!(reply.ends_with(",{}]"), "{reply}");
    }

    #[test]
    fn a_missing_or_non_string_id_cannot_be_answered() {
        let e = err("[2]");
        assert_eq!(e.code, ErrorCode::ProtocolError);
        assert_eq!(e.reply(), None);
        let e = err(r#"[2,17,"Heartbeat",{}]"#);
        assert_eq!(e.code, ErrorCode::FormationViolation);
        assert_eq!(e.reply(), None);
        let e = err(r#"[2,"","Heartbeat",{}]"#);
        assert_eq!(e.reply(), None);
    }

    #[test]
    fn an_id_longer_than_36_characters_is_answered_with_formation_violation() {
        let long = "x".repeat(37);
        let e = err(&format!(r#"[2,"{long}","Heartbeat",{{}}]"#));
        assert_eq!(e.code, ErrorCode::FormationViolation);
        assert_eq!(e.reply_id.as_deref(), Some(long.as_str()));
        // 36 characters are fine, counted as characters, not bytes.
        let ok = "é".repeat(36);
        assert!(Frame::parse(&format!(r#"[2,"{ok}","Heartbeat",{{}}]"#)).is_ok());
        // A too-long id on a reply frame is dropped, never answered.
        assert_eq!(err(&format!(r#"[3,"{long}",{{}}]"#)).reply(), None);
    }

    #[test]
    fn a_call_with_wrong_arity_is_a_protocol_error_answered_with_its_id() {
        for text in [
            r#"[2,"id1","Heartbeat"]"#,
            r#"[2,"id1"]"#,
            r#"[2,"id1","Heartbeat",{},{}]"#,
        ] {
            let e = err(text);
            assert_eq!(e.code, ErrorCode::ProtocolError, "{text}");
            assert_eq!(e.reply_id.as_deref(), Some("id1"), "{text}");
        }
    }

    #[test]
    fn a_call_with_wrong_element_types_is_a_formation_violation_answered_with_its_id() {
        for text in [
            r#"[2,"id1",5,{}]"#,
            r#"[2,"id1","",{}]"#,
            r#"[2,"id1","Heartbeat",[]]"#,
            r#"[2,"id1","Heartbeat",null]"#,
            r#"[2,"id1","Heartbeat","{}"]"#,
        ] {
            let e = err(text);
            assert_eq!(e.code, ErrorCode::FormationViolation, "{text}");
            assert_eq!(e.reply_id.as_deref(), Some("id1"), "{text}");
        }
    }

    #[test]
    fn broken_replies_are_never_answered() {
        for text in [
            r#"[3,"id1"]"#,
            r#"[3,"id1",{},{}]"#,
            r#"[4,"id1"]"#,
            r#"[4,"id1",7,"",{}]"#,
            r#"[4,"id1","GenericError","",{},1]"#,
        ] {
            let e = err(text);
            assert_eq!(e.reply(), None, "{text}");
        }
    }

    #[test]
    fn message_ids_are_unique_and_at_most_36_characters() {
        let mut ids = MessageIds::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = ids.next_id();
            assert!(id.len() <= MAX_MESSAGE_ID_LEN);
            assert!(seen.insert(id));
        }
        let mut long = MessageIds::with_prefix(&"p".repeat(100));
        long.next = u64::MAX;
        assert!(long.next_id().len() <= MAX_MESSAGE_ID_LEN);
        assert_ne!(MessageIds::new().prefix, MessageIds::new().prefix);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!(
            "[2,\"1\",\"A\",{{\"a\":{}{}}}]",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(err(&text).code, ErrorCode::FormationViolation);
    }
}
