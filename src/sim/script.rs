//! Commands that change a simulated wallbox, and timed scripts of them
//! (`plug@2s,unplug@30s,fault@40s,clear@45s`).

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::handle::SimHandle;
use crate::devicemap::Iec61851State;

/// One thing that can happen to a simulated wallbox.
#[derive(Clone, Debug, PartialEq)]
pub enum SimCommand {
    /// Plug the EV in.
    Plug,
    /// Unplug the EV.
    Unplug,
    /// Force a state (normally E or F; default F).
    Fault(Iec61851State),
    /// Clear the fault.
    Clear,
    /// Set the EV's maximum current in amperes.
    EvMax(f64),
    /// The EV's battery is full (`true`) or wants energy again (`false`).
    Full(bool),
    /// The device stops (`true`) or resumes (`false`) answering Modbus requests.
    Silent(bool),
    /// Set a register by name: text for string registers, else a number in engineering
    /// units or `0x…` hex.
    Set(String, String),
}

fn on_off(arg: Option<&str>) -> Result<bool, String> {
    match arg {
        None | Some("on" | "true" | "1") => Ok(true),
        Some("off" | "false" | "0") => Ok(false),
        Some(other) => Err(format!("expected on or off, not `{other}`")),
    }
}

impl SimCommand {
    /// Parses `plug`, `unplug`, `fault [STATE]`, `clear`, `evmax A`, `full [on|off]`,
    /// `silent [on|off]`, `set NAME VALUE` (words separated by spaces or `:`).
    ///
    /// # Errors
    /// A message saying what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut words = text
            .split(|c: char| c.is_whitespace() || c == ':')
            .filter(|w| !w.is_empty());
        let verb = words.next().unwrap_or_default().to_ascii_lowercase();
        let arg = words.next();
        let extra = words.next();
        let command = match (verb.as_str(), arg) {
            ("plug", None) => Self::Plug,
            ("unplug", None) => Self::Unplug,
            ("fault", None) => Self::Fault(Iec61851State::F),
            ("fault", Some(s)) => Self::Fault(
                Iec61851State::parse(&s.to_ascii_uppercase())
                    .ok_or_else(|| format!("unknown IEC 61851 state `{s}`: use A, B1 … E, F"))?,
            ),
            ("clear", None) => Self::Clear,
            ("evmax", Some(a)) => match a.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Self::EvMax(v),
                _ => return Err(format!("evmax needs amperes, not `{a}`")),
            },
            ("full", a) => Self::Full(on_off(a)?),
            ("silent", a) => Self::Silent(on_off(a)?),
            ("set", Some(name)) => {
                let value = extra.ok_or("set needs a register name and a value")?;
                return Ok(Self::Set(name.to_owned(), value.to_owned()));
            }
            _ => {
                return Err(format!(
                    "unknown command `{}`: use plug, unplug, fault [STATE], clear, evmax A, \
                     full [on|off], silent [on|off], set NAME VALUE",
                    text.trim()
                ));
            }
        };
        if extra.is_some() {
            return Err(format!("too many words in `{}`", text.trim()));
        }
        Ok(command)
    }

    /// Applies the command to a wallbox.
    ///
    /// # Errors
    /// `set` with an unknown register or a value that does not fit.
    pub fn apply(&self, handle: &SimHandle) -> Result<(), String> {
        match self {
            Self::Plug => handle.plug(),
            Self::Unplug => handle.unplug(),
            Self::Fault(s) => handle.set_fault(Some(*s)),
            Self::Clear => handle.set_fault(None),
            Self::EvMax(a) => handle.set_ev_max_current(*a),
            Self::Full(f) => handle.set_ev_full(*f),
            Self::Silent(s) => handle.set_silent(*s),
            Self::Set(name, text) => {
                return handle
                    .set_register_text(name, text)
                    .map_err(|e| e.to_string());
            }
        }
        Ok(())
    }
}

/// One step of a script: a command at an offset from the script's start.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptStep {
    /// When, after the start.
    pub at: Duration,
    /// What.
    pub command: SimCommand,
}

/// A script that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "script step {step} `{text}`: {reason} (write steps as COMMAND@TIME, e.g. plug@2s,fault:E@40s)"
)]
pub struct ScriptError {
    /// 1-based step number.
    pub step: usize,
    /// The step as written.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses `plug@2s,unplug@30s,fault@40s,clear@45s`; steps run in time order.
///
/// # Errors
/// [`ScriptError`] naming the first bad step.
pub fn parse_script(text: &str) -> Result<Vec<ScriptStep>, ScriptError> {
    let mut steps = Vec::new();
    for (i, raw) in text.split(',').enumerate() {
        let step = raw.trim();
        if step.is_empty() {
            continue;
        }
        let err = |reason: String| ScriptError {
            step: i + 1,
            text: step.to_owned(),
            reason,
        };
        let (command, at) = step
            .rsplit_once('@')
            .ok_or_else(|| err("missing @TIME".into()))?;
        let at = crate::duration::parse(at).map_err(err)?;
        let command = SimCommand::parse(command).map_err(err)?;
        steps.push(ScriptStep { at, command });
    }
    // Stable: steps at the same time keep their written order.
    steps.sort_by_key(|s| s.at);
    Ok(steps)
}

/// Runs a script against every handle, timed from now, until done or `shutdown`.
pub async fn run_script(
    handles: Vec<SimHandle>,
    steps: Vec<ScriptStep>,
    shutdown: CancellationToken,
) {
    let start = Instant::now();
    for step in steps {
        let due = start.checked_add(step.at).unwrap_or(start);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(due) => {}
        }
        for handle in &handles {
            if let Err(e) = step.command.apply(handle) {
                tracing::warn!(error = %e, "script step failed");
            }
        }
        tracing::info!(at = ?step.at, command = ?step.command, "script step");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let steps = parse_script("plug@2s,unplug@30s,fault@40s,clear@45s").unwrap();
        let got: Vec<_> = steps
            .iter()
            .map(|s| (s.at.as_secs(), s.command.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, SimCommand::Plug),
                (30, SimCommand::Unplug),
                (40, SimCommand::Fault(Iec61851State::F)),
                (45, SimCommand::Clear),
            ]
        );
    }

    #[test]
    fn arguments_and_ordering() {
        let steps = parse_script("evmax:10@5s, fault E@1s,set layout_version 0x0108@0s").unwrap();
        assert_eq!(
            steps[0].command,
            SimCommand::Set("layout_version".into(), "0x0108".into())
        );
        assert_eq!(steps[1].command, SimCommand::Fault(Iec61851State::E));
        assert_eq!(steps[2].command, SimCommand::EvMax(10.0));
    }

    #[test]
    fn bad_steps_name_themselves() {
        let e = parse_script("plug@2s,jump@3s").unwrap_err();
        assert_eq!(e.step, 2);
        assert!(e.to_string().contains("jump"));
        assert!(parse_script("plug").is_err());
        assert!(parse_script("plug@soon").is_err());
        assert!(parse_script("fault Z@1s").is_err());
        assert!(parse_script("evmax:-3@1s").is_err());
    }
}
