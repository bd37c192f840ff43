//! What the gateway writes: `control:`, `init:` and `keepalive:`.

use super::{Loader, defaults};
use crate::devicemap::model::{
    ControlSpec, CurrentLimitSpec, EnableSpec, KeepaliveAction, KeepaliveInterval, KeepaliveSpec,
    PowerLimitSpec, TimeUnit, WriteSpec,
};
use crate::devicemap::tree::{Kind, Node};

impl Loader<'_> {
    // ---- control ----

    pub(super) fn control(&mut self, node: &Node) -> Option<ControlSpec> {
        let f = self.ctx.fields(
            node,
            "control",
            &[
                "current_limit",
                "power_limit",
                "enable",
                "refresh",
                "failsafe_current",
            ],
        )?;
        let mut ok = true;
        let mut out = ControlSpec::default();
        if let Some(n) = f.get("current_limit") {
            out.current_limit = self.current_limit(n);
            ok &= out.current_limit.is_some();
        }
        if let Some(n) = f.get("power_limit") {
            out.power_limit = self.power_limit(n);
            ok &= out.power_limit.is_some();
            if f.get("current_limit").is_some() {
                // One set-point only: two would fight over what the wallbox offers.
                let at = f.key_pos("power_limit").unwrap_or(n.pos);
                self.ctx.err(
                    at,
                    "control: give either `current_limit` (A) or `power_limit` (W), not both; \
                     keep the one the wallbox is controlled by",
                );
                ok = false;
            }
        }
        if let Some(n) = f.get("enable") {
            out.enable = self.enable(n);
            ok &= out.enable.is_some();
        }
        if let Some(n) = f.get("refresh") {
            out.refresh = self.positive_duration(n, "control.refresh");
            ok &= out.refresh.is_some();
        }
        if let Some(n) = f.get("failsafe_current") {
            out.failsafe_current = self
                .ctx
                .fields(n, "control.failsafe_current", &["register"])
                .and_then(|ff| match ff.get("register") {
                    Some(r) => self.writable_ref(r, "control.failsafe_current.register"),
                    None => {
                        self.ctx
                            .err(ff.pos, "control.failsafe_current: missing `register`");
                        None
                    }
                });
            ok &= out.failsafe_current.is_some();
        }
        ok.then_some(out)
    }

    fn current_limit(&mut self, node: &Node) -> Option<CurrentLimitSpec> {
        let path = "control.current_limit";
        let f = self
            .ctx
            .fields(node, path, &["register", "min", "max", "off_value"])?;
        let register = match f.get("register") {
            Some(n) => self.writable_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `register` (e.g. `register: limit`)"),
                );
                None
            }
        };
        let min = match f.get("min") {
            Some(n) => self.amperes(n, &format!("{path}.min")),
            None => Some(defaults::MIN_CURRENT),
        };
        let max = match f.get("max") {
            Some(n) => self.amperes(n, &format!("{path}.max")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `max`: the largest current (A) the wallbox accepts, e.g. `max: 16`"),
                );
                None
            }
        };
        let off_value = match f.get("off_value") {
            Some(n) => self.ctx.number(n, &format!("{path}.off_value")),
            None => Some(0.0),
        };
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            let at = f.get("min").map_or(f.pos, |n| n.pos);
            self.ctx.err(
                at,
                format!("{path}: min {lo} A is greater than max {hi} A; swap them"),
            );
            return None;
        }
        let (register, min, max, off_value) = (register?, min?, max?, off_value?);
        let mut fits = self.check_encodes(
            register,
            max,
            f.get("max").map_or(f.pos, |n| n.pos),
            &format!("{path}.max"),
        );
        fits &= self.check_encodes(
            register,
            min,
            f.get("min").map_or(f.pos, |n| n.pos),
            &format!("{path}.min"),
        );
        fits &= self.check_encodes(
            register,
            off_value,
            f.get("off_value").map_or(f.pos, |n| n.pos),
            &format!("{path}.off_value"),
        );
        fits.then_some(CurrentLimitSpec {
            register,
            min,
            max,
            off_value,
        })
    }

    fn power_limit(&mut self, node: &Node) -> Option<PowerLimitSpec> {
        let path = "control.power_limit";
        let f = self
            .ctx
            .fields(node, path, &["register", "min_w", "max_w", "off_value"])?;
        let register = match f.get("register") {
            Some(n) => self.writable_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `register` (e.g. `register: power_limit`)"),
                );
                None
            }
        };
        let min_w = match f.get("min_w") {
            Some(n) => self.watts(n, &format!("{path}.min_w")),
            None => Some(defaults::MIN_POWER_W),
        };
        let max_w = match f.get("max_w") {
            Some(n) => self.watts(n, &format!("{path}.max_w")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `max_w`: the largest power (W) the wallbox accepts, e.g. `max_w: 11000`"),
                );
                None
            }
        };
        let off_value = match f.get("off_value") {
            Some(n) => self.ctx.number(n, &format!("{path}.off_value")),
            None => Some(0.0),
        };
        if let (Some(lo), Some(hi)) = (min_w, max_w)
            && lo > hi
        {
            let at = f.get("min_w").map_or(f.pos, |n| n.pos);
            self.ctx.err(
                at,
                format!("{path}: min_w {lo} W is greater than max_w {hi} W; swap them"),
            );
            return None;
        }
        let (register, min_w, max_w, off_value) = (register?, min_w?, max_w?, off_value?);
        let mut fits = true;
        for (field, v) in [("max_w", max_w), ("min_w", min_w), ("off_value", off_value)] {
            fits &= self.check_encodes(
                register,
                v,
                f.get(field).map_or(f.pos, |n| n.pos),
                &format!("{path}.{field}"),
            );
        }
        fits.then_some(PowerLimitSpec {
            register,
            min_w,
            max_w,
            off_value,
        })
    }

    fn watts(&mut self, node: &Node, path: &str) -> Option<f64> {
        let v = self.ctx.number(node, path)?;
        if v < 0.0 {
            self.ctx
                .err(node.pos, format!("{path}: a power cannot be negative"));
            return None;
        }
        Some(v)
    }

    fn amperes(&mut self, node: &Node, path: &str) -> Option<f64> {
        let v = self.ctx.number(node, path)?;
        if v < 0.0 {
            self.ctx
                .err(node.pos, format!("{path}: a current cannot be negative"));
            return None;
        }
        Some(v)
    }

    fn enable(&mut self, node: &Node) -> Option<EnableSpec> {
        let path = "control.enable";
        let f = self
            .ctx
            .fields(node, path, &["register", "on_value", "off_value"])?;
        let register = match f.get("register") {
            Some(n) => self.writable_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(f.pos, format!("{path}: missing `register`"));
                None
            }
        };
        let on_value = match f.get("on_value") {
            Some(n) => self.ctx.number(n, &format!("{path}.on_value")),
            None => Some(1.0),
        };
        let off_value = match f.get("off_value") {
            Some(n) => self.ctx.number(n, &format!("{path}.off_value")),
            None => Some(0.0),
        };
        let (register, on_value, off_value) = (register?, on_value?, off_value?);
        if (on_value - off_value).abs() < f64::EPSILON {
            self.ctx.err(
                f.pos,
                format!("{path}: on_value and off_value are both {on_value}; they must differ"),
            );
            return None;
        }
        let mut fits = self.check_encodes(
            register,
            on_value,
            f.get("on_value").map_or(f.pos, |n| n.pos),
            &format!("{path}.on_value"),
        );
        fits &= self.check_encodes(
            register,
            off_value,
            f.get("off_value").map_or(f.pos, |n| n.pos),
            &format!("{path}.off_value"),
        );
        fits.then_some(EnableSpec {
            register,
            on_value,
            off_value,
        })
    }

    // ---- init and keepalive ----

    pub(super) fn init(&mut self, node: &Node) -> Option<Vec<WriteSpec>> {
        let Kind::Seq(items) = &node.kind else {
            self.ctx.err(
                node.pos,
                format!(
                    "init: expected a list of writes, e.g. `- {{ register: standby, value: 4 }}`, found {}",
                    node.kind.describe()
                ),
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.write_spec(item, &format!("init[{i}]")) {
                Some(w) => out.push(w),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn write_spec(&mut self, node: &Node, path: &str) -> Option<WriteSpec> {
        let f = self.ctx.fields(node, path, &["register", "value"])?;
        let register = match f.get("register") {
            Some(n) => self.writable_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(f.pos, format!("{path}: missing `register`"));
                None
            }
        };
        let value = match f.get("value") {
            Some(n) => self.ctx.number(n, &format!("{path}.value")),
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `value` (in the register's units, after scale)"),
                );
                None
            }
        };
        let (register, value) = (register?, value?);
        let at = f.get("value").map_or(f.pos, |n| n.pos);
        self.check_encodes(register, value, at, &format!("{path}.value"))
            .then_some(WriteSpec { register, value })
    }

    pub(super) fn keepalive(&mut self, node: &Node) -> Option<KeepaliveSpec> {
        let f = self
            .ctx
            .fields(node, "keepalive", &["every", "every_from", "read", "write"])?;
        let interval = match (f.get("every"), f.get("every_from")) {
            (Some(_), Some(_)) => {
                let at = f.key_pos("every_from").unwrap_or(f.pos);
                self.ctx.err(
                    at,
                    "keepalive: give either `every` or `every_from`, not both",
                );
                None
            }
            (Some(n), None) => self
                .positive_duration(n, "keepalive.every")
                .map(KeepaliveInterval::Every),
            (None, Some(n)) => self.every_from(n),
            (None, None) => {
                self.ctx.err(
                    f.pos,
                    "keepalive: missing `every: 15s` or `every_from: { register: NAME, unit: ms, divide: 4 }`",
                );
                None
            }
        };
        let action = match (f.get("read"), f.get("write")) {
            (Some(_), Some(_)) => {
                let at = f.key_pos("write").unwrap_or(f.pos);
                self.ctx
                    .err(at, "keepalive: give either `read` or `write`, not both");
                None
            }
            (Some(n), None) => self
                .readable_ref(n, "keepalive.read")
                .map(KeepaliveAction::Read),
            (None, Some(n)) => self.keepalive_write(n),
            (None, None) => {
                self.ctx.err(
                    f.pos,
                    "keepalive: missing `read: NAME` or `write: { register: NAME, value: N }`",
                );
                None
            }
        };
        Some(KeepaliveSpec {
            interval: interval?,
            action: action?,
        })
    }

    /// `write: { register, value }` or `write: { register, value_from }`.
    fn keepalive_write(&mut self, node: &Node) -> Option<KeepaliveAction> {
        let path = "keepalive.write";
        let copies = node
            .as_map()
            .is_some_and(|m| m.iter().any(|(k, _)| k.key_text() == "value_from"));
        if !copies {
            return self.write_spec(node, path).map(KeepaliveAction::Write);
        }
        let f = self
            .ctx
            .fields(node, path, &["register", "value", "value_from"])?;
        let from_node = f.get("value_from")?;
        if f.get("value").is_some() {
            let at = f.key_pos("value_from").unwrap_or(from_node.pos);
            self.ctx.err(
                at,
                "keepalive.write: give either `value` or `value_from`, not both",
            );
            return None;
        }
        let register = match f.get("register") {
            Some(n) => self.writable_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(f.pos, format!("{path}: missing `register`"));
                None
            }
        };
        let from = self.readable_numeric_ref(from_node, &format!("{path}.value_from"));
        Some(KeepaliveAction::Copy {
            register: register?,
            from: from?,
        })
    }

    fn every_from(&mut self, node: &Node) -> Option<KeepaliveInterval> {
        let path = "keepalive.every_from";
        let f = self
            .ctx
            .fields(node, path, &["register", "unit", "divide"])?;
        let register = match f.get("register") {
            Some(n) => self.readable_numeric_ref(n, &format!("{path}.register")),
            None => {
                self.ctx.err(f.pos, format!("{path}: missing `register`"));
                None
            }
        };
        let unit = match f.get("unit") {
            Some(n) => match self.ctx.choice(n, &format!("{path}.unit"), &["ms", "s"]) {
                Some("ms") => Some(TimeUnit::Ms),
                Some(_) => Some(TimeUnit::S),
                None => None,
            },
            None => {
                self.ctx.err(
                    f.pos,
                    format!("{path}: missing `unit` of the register's value: ms or s"),
                );
                None
            }
        };
        let divide = match f.get("divide") {
            Some(n) => self
                .ctx
                .int(n, &format!("{path}.divide"), 1, 1000)
                .and_then(|d| u32::try_from(d).ok()),
            None => Some(1),
        };
        Some(KeepaliveInterval::FromRegister {
            register: register?,
            unit: unit?,
            divide: divide?,
        })
    }
}
