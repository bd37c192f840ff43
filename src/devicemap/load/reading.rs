//! What the gateway reads: `identity:`, `status:` and `measurands:`.

use super::{FIRMWARE_MAX, Loader, MEASURANDS, PHASES, SERIAL_MAX, type_name};
use crate::devicemap::fields::suggest;
use crate::devicemap::model::{
    Counts, ENERGY_REGISTER, Identity, IdentityValue, Iec61851State, MeasurandSpec, RegisterId,
    StatusKey, StatusSpec, ValueType, VehicleSpec,
};
use crate::devicemap::tree::{Kind, Node, is_yaml11_bool};

impl Loader<'_> {
    // ---- identity ----

    pub(super) fn identity(&mut self, node: &Node) -> Option<Identity> {
        let f = self.ctx.fields(node, "identity", &["firmware", "serial"])?;
        // Each field is checked even when the other one is wrong.
        let firmware = f
            .get("firmware")
            .map(|n| self.identity_value(n, "identity.firmware", FIRMWARE_MAX));
        let serial = f
            .get("serial")
            .map(|n| self.identity_value(n, "identity.serial", SERIAL_MAX));
        let firmware = firmware.map_or(Some(None), |v| v.map(Some))?;
        let serial = serial.map_or(Some(None), |v| v.map(Some))?;
        Some(Identity { firmware, serial })
    }

    fn identity_value(&mut self, node: &Node, path: &str, max: usize) -> Option<IdentityValue> {
        match &node.kind {
            Kind::Str(s) => {
                if s.chars().any(char::is_control) {
                    self.ctx.err(
                        node.pos,
                        format!("{path}: contains control characters; use plain text"),
                    );
                    return None;
                }
                if s.chars().count() > max {
                    self.ctx.err(
                        node.pos,
                        format!("{path}: longer than {max} characters, the OCPP limit; shorten it"),
                    );
                    return None;
                }
                Some(IdentityValue::Literal(s.clone()))
            }
            Kind::Map(_) => {
                let f = self.ctx.fields(node, path, &["register", "format"])?;
                let register = match f.get("register") {
                    Some(n) => self.readable_ref(n, &format!("{path}.register")),
                    None => {
                        self.ctx.err(
                            f.pos,
                            format!("{path}: missing `register` (e.g. `{{ register: firmware_version }}`)"),
                        );
                        None
                    }
                };
                let format = match f.get("format") {
                    Some(n) => {
                        let s = self.ctx.string(n, &format!("{path}.format"))?;
                        if !s.contains("{}") {
                            self.ctx.err(
                                n.pos,
                                format!("{path}.format: `{s}` has no `{{}}` for the register's value, e.g. \"v{{}}\""),
                            );
                            return None;
                        }
                        Some(s.to_owned())
                    }
                    None => None,
                };
                Some(IdentityValue::Register {
                    register: register?,
                    format,
                })
            }
            other => {
                self.ctx.err(
                    node.pos,
                    format!(
                        "{path}: expected text in quotes or {{ register: NAME }}, found {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    // ---- status ----

    pub(super) fn status(&mut self, node: &Node) -> Option<StatusSpec> {
        let f = self
            .ctx
            .fields(node, "status", &["register", "map", "vehicle"])?;
        let register = match f.get("register") {
            Some(n) => self.readable_ref(n, "status.register"),
            None => {
                self.ctx
                    .err(f.pos, "status: missing `register` (e.g. `register: state`)");
                None
            }
        };
        // What kind of keys the map must have; `None` when the register is unknown or unusable.
        let key_kind = register.and_then(|id| {
            let e = &self.regs[id];
            match e.reg.ty {
                ValueType::String => Some(true),
                ValueType::F32 | ValueType::F64 => {
                    let msg = format!(
                        "status.register: `{}` is a {} register; the state must come from an integer or string register",
                        e.reg.name,
                        type_name(e.reg.ty)
                    );
                    let at = f.get("register").map_or(f.pos, |n| n.pos);
                    self.ctx.err(at, msg);
                    None
                }
                _ => Some(false),
            }
        });
        let map = match f.get("map") {
            Some(n) => self.status_map(n, register, key_kind),
            None => {
                self.ctx.err(
                    f.pos,
                    "status: missing `map` of raw value -> IEC 61851 state, e.g. `map: { 2: A, 4: B1, 7: C2 }`",
                );
                None
            }
        };
        let vehicle = match f.get("vehicle") {
            Some(n) => self.vehicle(n).map(Some),
            None => Some(None),
        };
        Some(StatusSpec {
            register: register?,
            map: map?,
            vehicle: vehicle?,
        })
    }

    /// `status.vehicle: { register: cable_state, connected: [5, 7] }`.
    fn vehicle(&mut self, node: &Node) -> Option<VehicleSpec> {
        let path = "status.vehicle";
        let f = self.ctx.fields(node, path, &["register", "connected"])?;
        let register = match f.get("register") {
            Some(n) => self.readable_numeric_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `register`: the cable-state register, e.g. `register: cable_state`"),
                );
                None
            }
        };
        if let (Some(id), Some(n)) = (register, f.get("register"))
            && matches!(self.regs[id].reg.ty, ValueType::F32 | ValueType::F64)
        {
            let msg = format!(
                "{path}.register: `{}` is a {} register; the cable state must come from an integer register",
                self.regs[id].reg.name,
                type_name(self.regs[id].reg.ty)
            );
            self.ctx.err(n.pos, msg);
            return None;
        }
        let connected = match f.get("connected") {
            Some(n) => self.raw_values(n, &format!("{path}.connected")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `connected`: the raw values meaning a vehicle is plugged, e.g. `connected: [5, 7]`"),
                );
                None
            }
        };
        Some(VehicleSpec {
            register: register?,
            connected: connected?,
        })
    }

    /// A non-empty list of raw unsigned values (after mask/shift).
    fn raw_values(&mut self, node: &Node, path: &str) -> Option<Vec<i64>> {
        let Kind::Seq(items) = &node.kind else {
            self.ctx.err(
                node.pos,
                format!(
                    "{path}: expected a list of raw values, e.g. `[5, 7]`, found {}",
                    node.kind.describe()
                ),
            );
            return None;
        };
        if items.is_empty() {
            self.ctx.err(
                node.pos,
                format!("{path}: the list is empty; give at least one raw value, e.g. `[5, 7]`"),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.ctx.int(item, path, 0, i128::from(i64::MAX)) {
                Some(v) => out.push(i64::try_from(v).unwrap_or(i64::MAX)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn status_map(
        &mut self,
        node: &Node,
        register: Option<RegisterId>,
        string_keys: Option<bool>,
    ) -> Option<Vec<(StatusKey, Iec61851State)>> {
        let entries = self
            .ctx
            .map(node, "status.map", "raw value -> IEC 61851 state")?;
        if entries.is_empty() {
            self.ctx.err(
                node.pos,
                "status.map: list at least one raw value, e.g. `{ 2: A, 7: C2 }`",
            );
        }
        let reg_name = register.map_or_else(String::new, |id| self.regs[id].reg.name.clone());
        let states: Vec<&'static str> = Iec61851State::ALL.iter().map(|s| s.as_str()).collect();
        let mut out: Vec<(StatusKey, Iec61851State)> = Vec::new();
        let mut ok = true;
        for (k, v) in entries {
            let key = self.status_key(k, &reg_name, string_keys);
            let state = match &v.kind {
                Kind::Str(s) => match Iec61851State::parse(s) {
                    Some(st) => Some(st),
                    None => {
                        let hint = suggest(s, states.iter().copied())
                            .map(|x| format!("did you mean `{x}`? "))
                            .unwrap_or_default();
                        self.ctx.err(
                            v.pos,
                            format!(
                                "status.map: `{s}` is not an IEC 61851 state; {hint}use one of {}",
                                states.join(", ")
                            ),
                        );
                        None
                    }
                },
                other => {
                    self.ctx.err(
                        v.pos,
                        format!(
                            "status.map: expected an IEC 61851 state ({}), found {}",
                            states.join(", "),
                            other.describe()
                        ),
                    );
                    None
                }
            };
            match (key, state) {
                (Some(key), Some(state)) => {
                    if out.iter().any(|(k2, _)| *k2 == key) {
                        self.ctx.err(
                            k.pos,
                            format!(
                                "status.map: raw value `{}` is listed twice; keep one",
                                k.key_text()
                            ),
                        );
                        ok = false;
                    } else {
                        out.push((key, state));
                    }
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn status_key(&mut self, k: &Node, reg: &str, string_keys: Option<bool>) -> Option<StatusKey> {
        match (&k.kind, string_keys) {
            (Kind::Bool(b), _) => {
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: the key `{b}` is a boolean; status values are raw numbers, \
                         or text in quotes for string registers"
                    ),
                );
                None
            }
            (Kind::Str(s), Some(false)) if is_yaml11_bool(s) => {
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: the key `{s}` is a boolean to YAML 1.1 tools and text here, \
                         but register `{reg}` is numeric; use the raw numbers it reports"
                    ),
                );
                None
            }
            (Kind::Int(i), Some(true)) => {
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: key {i} is a number but register `{reg}` is a string; quote it: \"{i}\""
                    ),
                );
                None
            }
            (Kind::Int(i), _) => match i64::try_from(*i) {
                Ok(n) if n >= 0 => Some(StatusKey::Number(n)),
                _ => {
                    self.ctx.err(
                        k.pos,
                        format!(
                            "status.map: key {i} can never match: status values are raw unsigned integers \
                             (after mask/shift), e.g. 65535 for 0xFFFF"
                        ),
                    );
                    None
                }
            },
            (Kind::Str(s), Some(false)) => {
                let hint = if s.trim().parse::<i64>().is_ok() {
                    format!("write it without quotes: {}", s.trim())
                } else {
                    "use the raw numbers the register reports".to_owned()
                };
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: key \"{s}\" is text but register `{reg}` is numeric; {hint}"
                    ),
                );
                None
            }
            (Kind::Str(s), _) => Some(StatusKey::Text(s.clone())),
            (other, _) => {
                self.ctx.err(
                    k.pos,
                    format!(
                        "status.map: key `{}` is {}; use raw integers or, for string registers, text",
                        k.key_text(),
                        other.describe()
                    ),
                );
                None
            }
        }
    }

    // ---- measurands ----

    pub(super) fn measurands(&mut self, node: &Node) -> Option<Vec<MeasurandSpec>> {
        let entries = self.ctx.map(
            node,
            "measurands",
            "OCPP measurand -> register, or -> { PHASE: register }",
        )?;
        let mut out = Vec::new();
        let mut ok = true;
        for (k, v) in entries {
            let Some(name) = self.ctx.key(k, "measurands") else {
                ok = false;
                continue;
            };
            if !MEASURANDS.contains(&name) {
                let hint = suggest(name, MEASURANDS.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                self.ctx.err(
                    k.pos,
                    format!(
                        "measurands: `{name}` is not an OCPP 1.6 measurand; {hint}use one of {}",
                        MEASURANDS.join(", ")
                    ),
                );
                ok = false;
            }
            let path = format!("measurands.{name}");
            let mut counts = Counts::Lifetime;
            let sources = match &v.kind {
                Kind::Map(fields) if fields.iter().any(|(k, _)| k.key_text() == "register") => {
                    match self.counted_source(v, name, &path) {
                        Some((source, c)) => {
                            counts = c;
                            vec![(None, source)]
                        }
                        None => {
                            ok = false;
                            Vec::new()
                        }
                    }
                }
                Kind::Map(phases) => {
                    if phases.is_empty() {
                        self.ctx.err(
                            v.pos,
                            format!("{path}: list at least one phase, e.g. `{{ L1: current_l1 }}`"),
                        );
                    }
                    let mut sources = Vec::new();
                    for (pk, pv) in phases {
                        let phase = self.ctx.key(pk, &path);
                        if let Some(p) = phase
                            && !PHASES.contains(&p)
                        {
                            let hint = suggest(p, PHASES.iter().copied())
                                .map(|s| format!("did you mean `{s}`? "))
                                .unwrap_or_default();
                            self.ctx.err(
                                pk.pos,
                                format!(
                                    "{path}: `{p}` is not an OCPP 1.6 phase; {hint}use one of {}",
                                    PHASES.join(", ")
                                ),
                            );
                            ok = false;
                        }
                        let reg =
                            self.readable_numeric_ref(pv, &format!("{path}.{}", pk.key_text()));
                        match (phase, reg) {
                            (Some(p), Some(r)) => sources.push((Some(p.to_owned()), r)),
                            _ => ok = false,
                        }
                    }
                    sources
                }
                _ => match self.readable_numeric_ref(v, &path) {
                    Some(r) => vec![(None, r)],
                    None => {
                        ok = false;
                        Vec::new()
                    }
                },
            };
            out.push(MeasurandSpec {
                measurand: name.to_owned(),
                sources,
                counts,
            });
        }
        ok.then_some(out)
    }

    /// `{ register: NAME, counts: session | lifetime }`: an energy register that may count
    /// per session only.
    fn counted_source(
        &mut self,
        node: &Node,
        name: &str,
        path: &str,
    ) -> Option<(RegisterId, Counts)> {
        let f = self.ctx.fields(node, path, &["register", "counts"])?;
        if name != ENERGY_REGISTER {
            self.ctx.err(
                f.pos,
                format!("{path}: `{{ register, counts }}` is for {ENERGY_REGISTER} only; name the register directly"),
            );
            return None;
        }
        let counts = match f.get("counts") {
            Some(n) => match self
                .ctx
                .choice(n, &format!("{path}.counts"), &["lifetime", "session"])
            {
                Some("session") => Some(Counts::Session),
                Some(_) => Some(Counts::Lifetime),
                None => None,
            },
            None => Some(Counts::Lifetime),
        };
        let register = match f.get("register") {
            Some(n) => self.readable_numeric_ref(n, &format!("{path}.register")),
            None => None,
        };
        Some((register?, counts?))
    }
}
